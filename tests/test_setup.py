"""Set-up (issue 15): `make run` needs software rendering only, a local Slurm is for `make test`; the system-package
script skips what already works and, without apt or root, names what is missing and the manual route; the conda and
pip routes install the same pinned packages; requires-python admits what the pins allow."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install_sysdeps.sh"
VENV_PY = REPO / ".venv" / "bin" / "python"
SLURM = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged")


def make_dry_run(target: str) -> str:
    proc = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_run_needs_rendering_only_and_make_test_also_slurm():
    run = make_dry_run("run")
    assert "scripts/install_sysdeps.sh run" in run and "install_sysdeps.sh test" not in run
    assert "slurm" not in run.lower().replace("install_sysdeps.sh run", "")
    assert "scripts/install_sysdeps.sh test" in make_dry_run("test")


def sandbox_path(tmp_path: Path, tools: dict[str, str | None]) -> str:
    """A PATH holding only the named tools: a real one (value None) or a stub script (value = its body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        target = bin_dir / name
        if body is None:
            real = shutil.which(name) or shutil.which(name, path="/sbin:/usr/sbin")
            assert real, name
            target.symlink_to(real)
        else:
            target.write_text(f"#!/bin/sh\n{body}\n")
            target.chmod(0o755)
    return str(bin_dir)


def run_script(mode: str, path: str, venv_py: Path | str, **env: str) -> subprocess.CompletedProcess:
    e = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "VENV_PY": str(venv_py),
         "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", **env}
    return subprocess.run(["/bin/bash", str(SCRIPT), mode], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=120)


BASIC = {"grep": None, "cat": None, "timeout": None, "ldconfig": None, "id": None}


def test_run_mode_passes_where_rendering_works_and_slurm_is_absent(tmp_path):
    """Rendering works here (a MuJoCo EGL context opens with .venv's python) and no Slurm command is on PATH:
    `make run`'s system step passes without installing anything."""
    path = sandbox_path(tmp_path, BASIC | {"apt-get": "echo apt-get must not run >&2; exit 9"})
    assert not any(shutil.which(c, path=path) for c in SLURM)
    proc = run_script("run", path, VENV_PY)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    # without .venv the check looks for the libraries (here: present)
    proc = run_script("run", path, "/nonexistent/python")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_test_mode_wants_slurm_and_without_apt_prints_the_manual_route(tmp_path):
    path = sandbox_path(tmp_path, BASIC)
    proc = run_script("test", path, VENV_PY)
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("missing system packages for 'make test': slurm-wlm munge (Debian/Ubuntu names; "
                            "RHEL-type: slurm slurm-slurmctld slurm-slurmd munge)"), proc.stderr
    assert "there is no apt-get here" in proc.stderr and "Set-up without root" in proc.stderr
    assert "'make run', and the pipeline on a real cluster, do not need it" in proc.stderr


def test_without_root_or_rendering_libraries_the_message_names_them(tmp_path):
    path = sandbox_path(tmp_path, BASIC | {"ldconfig": "exit 0", "id": "echo 1000", "apt-get": "exit 9"})
    proc = run_script("run", path, "/nonexistent/python")
    assert proc.returncode == 1
    assert "libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 libglfw3" in proc.stderr
    assert "mesa-libEGL mesa-libGL mesa-dri-drivers mesa-libOSMesa glfw" in proc.stderr
    assert "needs root (or sudo)" in proc.stderr
    assert "conda install -c conda-forge mesalib" in proc.stderr and "make run SYSDEPS=skip" in proc.stderr
    assert "slurm" not in proc.stderr.splitlines()[0]
    # osmesa mode asks only for the OSMesa library
    path2 = sandbox_path(tmp_path / "o", BASIC | {"ldconfig": "echo '\tlibOSMesa.so.8 (libc6,x86-64) => /x'"})
    assert run_script("run", path2, "/nonexistent/python", MUJOCO_GL="osmesa").returncode == 0


def test_sysdeps_skip_and_bad_mode(tmp_path):
    path = sandbox_path(tmp_path, {})
    assert run_script("test", path, "/nonexistent/python", SYSDEPS="skip").returncode == 0
    assert run_script("all", path, VENV_PY).returncode == 2


def test_conda_and_pip_routes_install_the_same_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    makefile = (REPO / "Makefile").read_text()
    [pip_args] = re.findall(r"\$\(PY\) -m pip install -q (.+)", makefile)
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-c constraints.txt", "-e .[sim,workflow,test]"]
    assert pip_args.split() == ["-c", "constraints.txt", "-e", '".[sim,workflow,test]"']
    # both drop torchvision afterwards (the Makefile runs it, environment.yml's first lines tell the user to)
    assert "pip uninstall -y -q torchvision" in makefile
    assert "pip uninstall -y torchvision" in (REPO / "environment.yml").read_text().split("name:")[0]
    # the conda Python is one requires-python admits, and no package is pinned in environment.yml besides python
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"
    assert [d for d in env["dependencies"] if isinstance(d, str)] == ["python=3.11", "pip"]
    requires = re.search(r'requires-python = "(.+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert requires == ">=3.11,<3.13"
    from packaging.specifiers import SpecifierSet

    assert "3.11" in SpecifierSet(requires) and "3.12" in SpecifierSet(requires)
    assert "3.10" not in SpecifierSet(requires)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in SpecifierSet(requires)


def test_every_pin_is_a_single_version():
    """constraints.txt pins each package to one version (what makes the two routes equal)."""
    lines = [ln.strip() for ln in (REPO / "constraints.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    bad = [ln for ln in lines if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", ln)]
    assert not bad, bad
    names = [ln.split("==")[0].lower().replace("_", "-") for ln in lines]
    assert len(names) == len(set(names))
