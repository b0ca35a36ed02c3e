#!/bin/sh
# Stand-in (see README.md here): kind asks for --privileged, which this machine refuses.
set -eu
self_dir=$(cd "$(dirname "$0")" && pwd)
real=''
old_ifs=$IFS
IFS=:
for dir in $PATH; do
  [ "$dir" = "$self_dir" ] && continue
  if [ -x "$dir/docker" ]; then real=$dir/docker; break; fi
done
IFS=$old_ifs
[ -n "$real" ] || { echo "docker stand-in: no real docker on PATH" >&2; exit 127; }
sub=${1:-}
case $sub in
  run | exec) ;;
  *) exec "$real" "$@" ;;
esac
first=1
for arg do
  if [ "$first" = 1 ]; then set --; first=0; fi
  if [ "$arg" = --privileged ]; then
    if [ "$sub" = run ]; then
      set -- "$@" --cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt systempaths=unconfined --device-cgroup-rule='a *:* rwm'
    fi
    continue
  fi
  set -- "$@" "$arg"
done
exec "$real" "$@"
