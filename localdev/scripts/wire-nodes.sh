#!/bin/sh
# Write every certs.d/<host>/hosts.toml into every node of the kind cluster CLUSTER_NAME,
# the way kind's own local-registry guide does (docker exec mkdir, then cp /dev/stdin),
# remove the hosts.toml of registries the config no longer names, and check that each node's
# containerd really reads CERTS_DIR. HOSTS_FILES holds one line per file:
# "<host>/hosts.toml <base64 of its content>". containerd reads hosts.toml at each pull, so no
# restart is needed; a second run changes nothing. cri_config_path comes from cri-config-path.sh,
# prepended by the renderer.
set -eu
: "${CLUSTER_NAME:?CLUSTER_NAME is required}"
: "${CERTS_DIR:?CERTS_DIR is required}"
: "${HOSTS_FILES:?HOSTS_FILES is required}"

nodes=$(kind get nodes --name "$CLUSTER_NAME")
[ -n "$nodes" ] || { echo "no nodes found for the kind cluster $CLUSTER_NAME" >&2; exit 1; }
wanted=$(printf '%s\n' "$HOSTS_FILES" | while read -r file _; do echo "$CERTS_DIR/$file"; done)

for node in $nodes; do
  path=$(cri_config_path "$node")
  if [ "$path" != "$CERTS_DIR" ]; then
    echo "error: containerd on $node has CRI config_path '$path', not $CERTS_DIR: it ignores every hosts.toml, so pulls would bypass the caches. Fix: kind delete cluster --name $CLUSTER_NAME, then pulumi up (and if it recurs, the node image's containerd config is no longer version = 2: set nodeImage to one that is)" >&2
    exit 1
  fi
  printf '%s\n' "$HOSTS_FILES" | while read -r file payload; do
    docker exec "$node" mkdir -p "$CERTS_DIR/${file%/*}" </dev/null
    printf '%s' "$payload" | base64 -d | docker exec -i "$node" cp /dev/stdin "$CERTS_DIR/$file"
  done
  # A mirror taken out of the config must not stay in the nodes' pull path.
  present=$(docker exec "$node" find "$CERTS_DIR" -name hosts.toml </dev/null)
  for file in $present; do
    printf '%s\n' "$wanted" | grep -qx "$file" && continue
    docker exec "$node" rm -f "$file" </dev/null
    docker exec "$node" rmdir "${file%/*}" </dev/null 2>/dev/null || true
    echo "removed $file from $node: no such mirror in the config" >&2
  done
  echo "wired registry mirrors into $node" >&2
done
