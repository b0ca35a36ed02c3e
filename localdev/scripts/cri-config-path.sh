# shellcheck shell=sh
# Sourced text, prepended by the renderer to the scripts that check nodes (kind-create.sh,
# wire-nodes.sh): cri_config_path NODE prints the config_path that CRI's registry section has in
# the node's *effective* containerd config (`containerd config dump`), empty when unset.
#
# The effective config, not the file: containerd 2.x migrates a version-2 file's
# plugins."io.containerd.grpc.v1.cri".registry to plugins."io.containerd.cri.v1.images".registry,
# and kind skips a containerdConfigPatches entry whose version differs from its node file's without
# an error, so only the dump says what CRI will use. containerd 2.x dumps a second config_path, under
# the transfer service, which kubelet's pulls never read; it is not looked at.
cri_config_path() {
  dump=$(docker exec "$1" containerd config dump </dev/null) || return 1
  printf '%s\n' "$dump" | tr "'" '"' | awk '
    /^[[:space:]]*\[/ {
      cri = ($0 ~ /^[[:space:]]*\[plugins\."io\.containerd\.(cri\.v1\.images|grpc\.v1\.cri)"\.registry\][[:space:]]*$/)
      next
    }
    cri && $1 == "config_path" { sub(/^[^=]*=[[:space:]]*/, ""); gsub(/"/, ""); value = $0 }
    END { print value }'
}
