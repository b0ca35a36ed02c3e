#!/bin/sh
# Write every certs.d/<host>/hosts.toml into every node of the kind cluster CLUSTER_NAME,
# the way kind's own local-registry guide does (docker exec mkdir, then cp /dev/stdin).
# HOSTS_FILES holds one line per file: "<host>/hosts.toml <base64 of its content>".
# containerd reads hosts.toml at each pull, so no restart is needed; a second run
# writes the same files again.
set -eu
: "${CLUSTER_NAME:?CLUSTER_NAME is required}"
: "${CERTS_DIR:?CERTS_DIR is required}"
: "${HOSTS_FILES:?HOSTS_FILES is required}"

nodes=$(kind get nodes --name "$CLUSTER_NAME")
[ -n "$nodes" ] || { echo "no nodes found for the kind cluster $CLUSTER_NAME" >&2; exit 1; }

for node in $nodes; do
  printf '%s\n' "$HOSTS_FILES" | while read -r file payload; do
    docker exec "$node" mkdir -p "$CERTS_DIR/${file%/*}" </dev/null
    printf '%s' "$payload" | base64 -d | docker exec -i "$node" cp /dev/stdin "$CERTS_DIR/$file"
  done
  echo "wired registry mirrors into $node" >&2
done
