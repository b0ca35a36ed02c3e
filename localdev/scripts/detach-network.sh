#!/bin/sh
# Take each container of CONTAINERS (space-separated) off the kind network; a container or
# network that is gone already is not an error.
set -eu
: "${CONTAINERS:?CONTAINERS is required}"

for container in $CONTAINERS; do
  docker network disconnect kind "$container" 2>/dev/null || true
done
