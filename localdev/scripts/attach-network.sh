#!/bin/sh
# Join each container of CONTAINERS (space-separated) to the kind network under its own
# name, so nodes reach it as http://<name>:5000. Containers already joined are left as they are.
set -eu
: "${CONTAINERS:?CONTAINERS is required}"

for container in $CONTAINERS; do
  attached=$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$container")
  if [ "$attached" = null ]; then
    docker network connect --alias "$container" kind "$container"
    echo "attached $container to the kind network" >&2
  fi
done
