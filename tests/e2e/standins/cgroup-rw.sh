#!/bin/sh
# Stand-in (see README.md here): make the cgroup v1 hierarchy writable, as --privileged would,
# then run kind's own entrypoint.
set -eu
if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup
  for controller in /sys/fs/cgroup/*; do
    [ -d "$controller" ] || continue
    mount -o remount,bind,rw "$controller" 2>/dev/null || true
  done
fi
exec "$@"
