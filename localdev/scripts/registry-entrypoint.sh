#!/bin/sh
# Entrypoint of the localdev pull-through caches; docs/offline.md explains it.
#
# distribution exits at start when its upstream is unreachable, so this script
# probes the upstream first and runs the registry ($REGISTRY_BIN serve CONFIG)
# as a child in one of two modes:
#   proxy      REGISTRY_PROXY_* as given: a pull-through cache.
#   read-only  REGISTRY_PROXY_* removed, storage read-only: serves what is cached.
# Every LOCALDEV_RECHECK_SECONDS it probes again and restarts the child when the
# mode must change. A proxy-mode child that exits is replaced by a read-only one;
# a read-only child that exits ends the script with its status. SIGTERM and
# SIGINT stop the child and end the script with status 0.
set -u

config=${1:-/etc/distribution/config.yml}
registry=${REGISTRY_BIN:-registry}
remote=${REGISTRY_PROXY_REMOTEURL:-}
recheck=${LOCALDEV_RECHECK_SECONDS:-30}
probe_timeout=${LOCALDEV_PROBE_TIMEOUT_SECONDS:-5}

log() { echo "localdev: $*" >&2; }

case $recheck$probe_timeout in
'' | *[!0-9]*) log "LOCALDEV_RECHECK_SECONDS and LOCALDEV_PROBE_TIMEOUT_SECONDS must be whole seconds"; exit 2 ;;
esac
# Without an upstream this is a plain registry: nothing to fall back from.
[ -n "$remote" ] || exec "$registry" serve "$config"

# Any HTTP answer means reachable (Docker Hub answers 401); no answer in time means
# down, and $last holds the last thing wget said.
upstream_up() {
	answer=$(timeout "$probe_timeout" wget -S --spider "$remote/v2/" 2>&1)
	case $answer in *HTTP/[0-9]*) return 0 ;; esac
	last=$(printf '%s\n' "$answer" | sed -n '$p')
	return 1
}

start() { # MODE (proxy | read-only), then the log line saying why
	mode=$1
	log "$2"
	if [ "$mode" = proxy ]; then
		"$registry" serve "$config" &
	else
		(
			for key in $(env | sed -n 's/^\(REGISTRY_PROXY_[A-Z0-9_]*\)=.*/\1/p'); do unset "$key"; done
			export REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}'
			exec "$registry" serve "$config"
		) &
	fi
	child=$!
}

stop() {
	[ -n "$child" ] || return 0
	kill -TERM "$child" 2>/dev/null
	while kill -0 "$child" 2>/dev/null; do wait "$child"; done
}

check() { # probe the upstream; restart the registry if the mode must change
	if upstream_up; then
		[ "$mode" = proxy ] || { stop; start proxy "upstream $remote reachable; serving as a pull-through cache"; }
	else
		[ "$mode" = read-only ] || { stop; start read-only "upstream $remote unreachable (no HTTP answer within ${probe_timeout}s: $last); serving cached content read-only"; }
	fi
}

mode='' child='' stopping=''
trap 'stopping=1' TERM INT
check
elapsed=0
while :; do
	sleep 1 &
	wait $! # returns early when a trapped signal arrives
	[ -z "$stopping" ] || break
	elapsed=$((elapsed + 1))
	if ! kill -0 "$child" 2>/dev/null; then
		wait "$child"
		status=$?
		[ "$mode" = proxy ] || { log "registry exited with status $status"; exit "$status"; }
		start read-only "registry exited with status $status in pull-through mode; serving cached content read-only until the next upstream check"
		elapsed=0
	elif [ "$elapsed" -ge "$recheck" ]; then
		elapsed=0
		check
	fi
done
log "stopping on signal"
stop
exit 0
