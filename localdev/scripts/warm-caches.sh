#!/bin/sh
# The warm step of `pulumi up`: fill the pull-through caches with every image the workloads
# run, before any node pulls, so a multi-node cluster's first start crosses the link once.
# Runs `localdev warm` with the project's own interpreter, from the project directory.
#   LOCALDEV_PYTHON  interpreter, relative to the project directory (the Pulumi.yaml virtualenv's)
#   WARM_MANIFESTS   directory of the Kubernetes manifests whose images are warmed
#   WARM_CACHES      one cache per line: HOST=URL=STORAGE (STORAGE: container:NAME or dir:PATH)
#   WARM_JOBS        parallel blob downloads
# An image that cannot be fetched (upstream unreachable) is reported and the step still exits 0:
# the nodes then pull through the caches as they would have without it. A second run finds
# everything stored and fetches nothing.
set -eu
: "${LOCALDEV_PYTHON:?LOCALDEV_PYTHON is required}"
: "${WARM_MANIFESTS:?WARM_MANIFESTS is required}"
: "${WARM_CACHES:?WARM_CACHES is required}"
: "${WARM_JOBS:?WARM_JOBS is required}"

# Pulumi runs the program and its providers from the project directory; a local Command without `dir`
# runs there too, which is what makes the relative paths above this machine-independent.
if [ ! -f Pulumi.yaml ] || [ ! -d "$WARM_MANIFESTS" ]; then
  echo "warm step: $(pwd) is not the project directory (no Pulumi.yaml or $WARM_MANIFESTS/)" >&2
  exit 1
fi
if [ ! -x "$LOCALDEV_PYTHON" ]; then
  echo "warm step: no interpreter $LOCALDEV_PYTHON in $(pwd) (run pulumi from the project directory, with its venv)" >&2
  exit 1
fi

set --
# One argument per line of WARM_CACHES; no entry holds a space or a glob character.
set -f
for cache in $WARM_CACHES; do
  set -- "$@" --cache "$cache"
done
set +f

exec "$LOCALDEV_PYTHON" -m localdev warm --progress-lines --allow-missing \
  --manifests "$WARM_MANIFESTS" --jobs "$WARM_JOBS" "$@"
