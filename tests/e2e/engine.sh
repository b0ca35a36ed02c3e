#!/bin/sh
# The end-to-end test's private Docker engine and its egress guard.
#
#   engine.sh start          start dockerd unless ours already answers; prints DOCKER_HOST=...
#   engine.sh stop           stop the dockerd this script started (by its pid file only)
#   engine.sh guard-install  drop container traffic that leaves the engine's own networks
#   engine.sh guard-remove   remove every rule guard-install added
#   engine.sh env            print DOCKER_HOST=...
#   engine.sh status         exit 0 when the private engine answers
#
# The engine is Debian's docker.io, with its own data root (kept in the cache, so images built
# once survive between runs), exec root, socket and pid file: it never touches a system dockerd.
# It runs with --iptables=false: dockerd leaves its chains, NAT rules and a FORWARD policy of DROP
# behind when it stops, and nothing here needs them (published ports go through docker-proxy,
# containers must not reach outside anyway), so the guard below is the only rule it ever needs.
# Its address pool is pinned, so every network it creates (the bridge, kind's network) lies in
# POOL4, and the guard can be written before any container exists. kind gives its network the
# fixed IPv6 subnet KIND_ULA (pkg/cluster/internal/providers/docker/network.go in kind's source).
set -eu

cache=${LOCALDEV_E2E_CACHE:-}
if [ -z "$cache" ]; then
  if [ "$(id -u)" = 0 ]; then cache=/var/cache/localdev-e2e; else cache=${XDG_CACHE_HOME:-$HOME/.cache}/localdev-e2e; fi
fi
run=${LOCALDEV_E2E_RUN:-/run/localdev-e2e}
sock=$run/docker.sock
pidfile=$run/dockerd.pid
log=$cache/engine/dockerd.log
POOL4=${LOCALDEV_E2E_POOL:-172.30.0.0/16}
KIND_ULA=fc00:f853:ccd:e793::/64
# Containers resolve outside names through this address (TEST-NET-2, RFC 5737); the guard drops
# every packet from the engine's networks to it, so no lookup of a public name leaves the machine.
DNS=198.51.100.1
CHAIN=LOCALDEV-E2E
# Port 9 (discard) on loopback: nothing listens there on this machine.
NO_PULL_PROXY=http://127.0.0.1:9

reachable() {
  DOCKER_HOST=unix://$sock docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

start() {
  if reachable; then
    echo "DOCKER_HOST=unix://$sock"
    return 0
  fi
  command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install -y docker.io" >&2; exit 1; }
  mkdir -p "$run" "$cache/engine/root"
  # A pid file left by a dockerd that died would make the new one refuse to start.
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  # The guard goes in before the engine can start any container.
  guard_install
  # Nothing is ever pulled: every image is built here. Should anything ask the engine for a pull
  # all the same, it goes to a proxy address where nothing listens, so it fails at once and the
  # engine never looks up a registry's name (a proxied request leaves name resolution to the proxy).
  HTTP_PROXY=$NO_PULL_PROXY HTTPS_PROXY=$NO_PULL_PROXY NO_PROXY='' \
    http_proxy=$NO_PULL_PROXY https_proxy=$NO_PULL_PROXY no_proxy='' \
    setsid dockerd \
    --data-root "$cache/engine/root" \
    --exec-root "$run/exec" \
    --host "unix://$sock" \
    --pidfile "$pidfile" \
    --default-address-pool "base=$POOL4,size=24" \
    --dns "$DNS" \
    --iptables=false \
    --log-level warn \
    </dev/null >"$log" 2>&1 &
  tries=0
  until reachable; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
      echo "dockerd did not answer on $sock within 30 s; its log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "DOCKER_HOST=unix://$sock"
}

stop() {
  # The pid file, else the dockerd serving this socket (a pid file lost to a crash or a second start).
  pid=$(cat "$pidfile" 2>/dev/null || pgrep -f -- "--host unix://$sock" || true)
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    tries=0
    while kill -0 "$pid" 2>/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -gt 60 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.5
    done
  fi
  rm -f "$pidfile"
}

# One chain per family, jumped to first from FORWARD (the host forwards IPv4 and IPv6). Only
# traffic from the engine's networks is matched: it may go to another of them over one of the
# engine's bridges (docker0, br-*), and anything else is dropped.
guard_install() {
  guard_remove
  iptables -w -N "$CHAIN"
  for bridge in docker0 br-+; do
    iptables -w -A "$CHAIN" -s "$POOL4" -d "$POOL4" -o "$bridge" -j RETURN
  done
  iptables -w -A "$CHAIN" -s "$POOL4" -j DROP
  iptables -w -I FORWARD 1 -j "$CHAIN"
  ip6tables -w -N "$CHAIN"
  # Neighbour discovery and multicast cross the bridge.
  ip6tables -w -A "$CHAIN" -d fe80::/10 -j RETURN
  ip6tables -w -A "$CHAIN" -d ff00::/8 -j RETURN
  ip6tables -w -A "$CHAIN" -s "$KIND_ULA" -d "$KIND_ULA" -o br-+ -j RETURN
  ip6tables -w -A "$CHAIN" -s "$KIND_ULA" -j DROP
  ip6tables -w -I FORWARD 1 -j "$CHAIN"
}

guard_remove() {
  while iptables -w -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  if iptables -w -F "$CHAIN" 2>/dev/null; then iptables -w -X "$CHAIN"; fi
  while ip6tables -w -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  if ip6tables -w -F "$CHAIN" 2>/dev/null; then ip6tables -w -X "$CHAIN"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  guard-install) guard_install ;;
  guard-remove) guard_remove ;;
  env) echo "DOCKER_HOST=unix://$sock" ;;
  status) reachable ;;
  *) echo "usage: $0 start|stop|guard-install|guard-remove|env|status" >&2; exit 2 ;;
esac
