#!/usr/bin/env bash
# Install the Debian packages the pipeline needs, when missing:
#   software EGL/OSMesa rendering for the LIBERO simulator, ffmpeg-free video (imageio-ffmpeg ships its own),
#   and slurm-wlm + munge for the local Slurm cluster that the SLURM tests start.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 libglfw3 slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "please install: ${missing[*]} (Debian/Ubuntu names)" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
