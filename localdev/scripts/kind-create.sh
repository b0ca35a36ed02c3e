#!/bin/sh
# Create the kind cluster CLUSTER_NAME from the config on stdin, or adopt one of that name that
# exists already, but only when every node's containerd really reads hosts.toml from CERTS_DIR;
# then print its kubeconfig (the Command's secret stdout). Everything else goes to stderr, which
# `pulumi up` shows. cri_config_path comes from cri-config-path.sh, prepended by the renderer.
set -eu
: "${CLUSTER_NAME:?CLUSTER_NAME is required}"
: "${CERTS_DIR:?CERTS_DIR is required}"

existing=$(kind get clusters 2>/dev/null)
adopted=''
if printf '%s\n' "$existing" | grep -qx "$CLUSTER_NAME"; then
  echo "kind cluster $CLUSTER_NAME exists; checking its nodes before adopting it" >&2
  adopted=1
else
  # The config comes on stdin, so nothing is written to disk.
  kind create cluster --name "$CLUSTER_NAME" --config=- --wait 120s >&2
fi

# A cluster whose containerd ignores hosts.toml pulls straight from the upstreams: refuse it
# rather than report mirrors that no pull goes through.
for node in $(kind get nodes --name "$CLUSTER_NAME"); do
  path=$(cri_config_path "$node")
  [ "$path" = "$CERTS_DIR" ] && continue
  if [ -n "$adopted" ]; then
    echo "error: kind cluster $CLUSTER_NAME exists but was not made by localdev: containerd on $node has CRI config_path '$path', not $CERTS_DIR, so it ignores the registry mirrors. Fix: kind delete cluster --name $CLUSTER_NAME, then pulumi up" >&2
  else
    echo "error: kind created cluster $CLUSTER_NAME but skipped localdev's containerd patch: containerd on $node has CRI config_path '$path', not $CERTS_DIR (the node image's /etc/containerd/config.toml is no longer version = 2?). Fix: set nodeImage to an image whose containerd config is version 2, then kind delete cluster --name $CLUSTER_NAME and pulumi up" >&2
  fi
  exit 1
done
kind get kubeconfig --name "$CLUSTER_NAME"
