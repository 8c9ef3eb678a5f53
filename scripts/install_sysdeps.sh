#!/usr/bin/env bash
# System packages, by what needs them:
#   scripts/install_sysdeps.sh run    software rendering for the LIBERO simulator (EGL, or OSMesa with
#                                     MUJOCO_GL=osmesa): all that `make run` and the pipeline itself need
#   scripts/install_sysdeps.sh test   the above plus a local Slurm (slurmctld, slurmd, munge): only the Slurm
#                                     tests of `make test` start one
# Nothing is installed when it already works: rendering is checked by opening a MuJoCo GL context with .venv's
# python when .venv exists (else by looking for the libraries with ldconfig), Slurm by its commands on PATH, so a
# cluster node or a RHEL-type machine where these come from elsewhere passes without apt.
# Otherwise the missing Debian packages are installed with apt-get (root or sudo). Without apt-get or root it
# stops with the list of what is missing and the manual route (README, "Set-up without root").
# SYSDEPS=skip (make run SYSDEPS=skip) skips this script altogether.
set -euo pipefail
mode="${1:-test}"
case "$mode" in run|test) ;; *) echo "usage: $0 [run|test]" >&2; exit 2 ;; esac
[ "${SYSDEPS:-check}" = skip ] && exit 0
PY="${VENV_PY:-.venv/bin/python}"
gl="${MUJOCO_GL:-egl}"

rendering_ok() {
  if [ -x "$PY" ] && "$PY" -c "import mujoco" 2>/dev/null; then
    MUJOCO_GL="$gl" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$gl}" timeout 60 "$PY" -c \
      "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()" >/dev/null 2>&1
    return
  fi
  local libs
  libs="$(ldconfig -p 2>/dev/null || true)"
  if [ "$gl" = osmesa ]; then
    grep -q 'libOSMesa\.so' <<<"$libs"
  else   # glvnd's libEGL plus a vendor library (Mesa's software one, or the NVIDIA driver's)
    grep -q 'libEGL\.so\.1' <<<"$libs" && grep -q 'libGL\.so\.1' <<<"$libs" \
      && grep -Eq 'libEGL_(mesa|nvidia)\.so\.0' <<<"$libs"
  fi
}

need_deb=()      # Debian/Ubuntu package names
need_rpm=()      # RHEL/Rocky/Fedora names, for the message
if ! rendering_ok; then
  need_deb+=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 libglfw3)
  need_rpm+=(mesa-libEGL mesa-libGL mesa-dri-drivers mesa-libOSMesa glfw)
fi
if [ "$mode" = test ]; then
  for c in slurmctld slurmd sbatch squeue sinfo; do
    if ! command -v "$c" >/dev/null; then need_deb+=(slurm-wlm); need_rpm+=(slurm slurm-slurmctld slurm-slurmd); break; fi
  done
  command -v munged >/dev/null || { need_deb+=(munge); need_rpm+=(munge); }
fi
[ ${#need_deb[@]} -eq 0 ] && exit 0

manual() {
  cat >&2 <<EOF
missing system packages for 'make $mode': ${need_deb[*]} (Debian/Ubuntu names; RHEL-type: ${need_rpm[*]})
$1
Manual route (README, "Set-up without root"):
  - rendering: ask for the packages above (or 'module load' a Mesa module), or without root install Mesa's
    software renderer into a conda environment (conda install -c conda-forge mesalib) and run with
    MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa; on a GPU node the NVIDIA driver's EGL is enough.
  - a local Slurm is needed by the Slurm tests only: 'make run', and the pipeline on a real cluster, do not need it;
    'make test PYTEST_ARGS="-m \"not slurm\""' runs the other tests.
  - to skip this check once you know rendering works: make run SYSDEPS=skip
EOF
  exit 1
}
command -v apt-get >/dev/null || manual "there is no apt-get here, so nothing is installed automatically."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then SUDO="sudo"
  else manual "installing them needs root (or sudo), and neither is available here."; fi
fi
echo "installing Debian packages for 'make $mode': ${need_deb[*]}" >&2
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_deb[@]}" >/dev/null
