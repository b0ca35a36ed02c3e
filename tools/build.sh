#!/usr/bin/env bash
# Build the Go programs the tests run, each pinned by a module of its own under tools/<name>/
# (go.mod + go.sum: one tool per module, so each is built against its own release's dependencies).
# Binaries go to .tools/bin/ (git-ignored) and are rebuilt only when a module's go.mod, go.sum
# or the Go version changes. Usage: tools/build.sh [NAME...]   (default: every module)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
command -v go >/dev/null || { echo "tools/build.sh: go not found; install Go 1.26 or newer" >&2; exit 1; }

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
  for mod in "$root"/tools/*/go.mod; do names+=("$(basename "$(dirname "$mod")")"); done
fi

for name in "${names[@]}"; do
  dir="$root/tools/$name"
  [ -f "$dir/go.mod" ] || { echo "tools/build.sh: no module tools/$name" >&2; exit 1; }
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" <(go version) | sha256sum | cut -c1-16)
  if [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  echo "building tools/$name (go.mod or Go changed)"
  # -mod=readonly: go.sum is the review point; a missing checksum fails instead of being added.
  (cd "$dir" && GOBIN="$bin" CGO_ENABLED=0 GOFLAGS=-mod=readonly go install tool)
  echo "$stamp" > "$bin/.$name.stamp"
done
