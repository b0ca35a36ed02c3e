#!/bin/sh
# Delete the kind cluster CLUSTER_NAME (kind succeeds when there is none).
set -eu
: "${CLUSTER_NAME:?CLUSTER_NAME is required}"

kind delete cluster --name "$CLUSTER_NAME"
