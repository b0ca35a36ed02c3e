#!/bin/sh
# Entrypoint of the cache containers. For now it only starts the registry the
# way the image's own entrypoint does; the offline fallback replaces this body.
set -eu
exec "${REGISTRY_BIN:-registry}" serve "${1:-/etc/distribution/config.yml}"
