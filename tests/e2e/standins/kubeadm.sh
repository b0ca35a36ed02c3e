#!/bin/sh
# Stand-in for kubeadm (see README.md here): no control plane exists on this machine.
set -eu
echo "kubeadm stand-in: $*" >>/kind/standin.log
case ${1:-} in
  init)
    mkdir -p /etc/kubernetes
    node=$(hostname)
    # kind reads this file back and rewrites the server to the published API port.
    cat >/etc/kubernetes/admin.conf <<CONF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: c3RhbmQtaW4=
    server: https://$node:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: c3RhbmQtaW4=
    client-key-data: c3RhbmQtaW4=
CONF
    ;;
  join) ;;
  version) cat /kind/version ;;
  *) echo "kubeadm stand-in: unsupported: $*" >&2; exit 1 ;;
esac
