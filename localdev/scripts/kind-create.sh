#!/bin/sh
# Create the kind cluster CLUSTER_NAME from the config on stdin, or adopt one of that
# name that exists already; then print its kubeconfig (the Command's secret stdout).
# Everything but the kubeconfig goes to stderr, which `pulumi up` shows.
set -eu
: "${CLUSTER_NAME:?CLUSTER_NAME is required}"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  echo "kind cluster $CLUSTER_NAME exists; adopting it" >&2
else
  # The config comes on stdin, so nothing is written to disk.
  kind create cluster --name "$CLUSTER_NAME" --config=- --wait 120s >&2
fi
kind get kubeconfig --name "$CLUSTER_NAME"
