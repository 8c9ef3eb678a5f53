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
    e = {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/root"),
        "VENV_PY": str(venv_py),
        "MUJOCO_GL": "egl",
        "PYOPENGL_PLATFORM": "egl",
        **env,
    }
    return subprocess.run(
        ["/bin/bash", str(SCRIPT), mode], cwd=REPO, env=e, capture_output=True, text=True, timeout=120
    )


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
    assert first.startswith(
        "missing system packages for 'make test': slurm-wlm munge (Debian/Ubuntu names; "
        "RHEL-type: slurm slurm-slurmctld slurm-slurmd munge)"
    ), proc.stderr
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
    lines = [
        ln.strip()
        for ln in (REPO / "constraints.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    bad = [ln for ln in lines if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", ln)]
    assert not bad, bad
    names = [ln.split("==")[0].lower().replace("_", "-") for ln in lines]
    assert len(names) == len(set(names))


def test_make_run_target_depends_on_the_rendering_check_only():
    """make's own rule database: `run` needs sysdeps-run and the venv, never sysdeps-test / sysdeps (the Slurm
    check); `test` is the one that needs the Slurm check."""
    proc = subprocess.run(
        ["make", "-p", "-n", "-r", "--no-print-directory", "lint"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    prereqs = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(run|test|sysdeps-run|sysdeps-test|sysdeps|venv):(?!=)(.*)$", line)
        if m:
            prereqs[m.group(1)] = m.group(2).split()
    assert prereqs["run"] == ["sysdeps-run", "venv"], prereqs
    assert prereqs["test"] == ["sysdeps-test", "venv"], prereqs


def test_make_run_reaches_the_workflow_where_slurm_is_absent(tmp_path):
    """`make run` itself (not -n), in a copy of the repository, with a PATH that has no Slurm or munge command and
    a package database that says slurm-wlm and munge are not installed: the system check (SYSDEPS=check, the
    default) opens a MuJoCo EGL context with .venv's python and passes without asking for Slurm or installing
    anything, and make goes on to the workflow. The venv is a stand-in (VENV=...) whose snakemake records its
    arguments and, for the workflow call, does a real dry run of the embedded default (the workflow builds its
    jobs without Slurm too); the 12-minute run itself is not repeated here."""
    work = tmp_path / "repo"
    for part in ("workflow", "config", "rdt", "scripts"):
        shutil.copytree(REPO / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, work / name)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    real = REPO / ".venv" / "bin" / "snakemake"
    stub = venv / "bin" / "snakemake"
    stub.write_text(f"""#!/bin/bash
echo "$*" >> {calls}
case " $* " in *" --report "*) exit 0 ;; esac
exec {real} "$@" --dry-run --nolock
""")
    stub.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml and constraints.txt: no pip install
    not_installed = 'echo "dpkg-query: no packages found matching $*" >&2; exit 1'
    path = sandbox_path(
        tmp_path,
        BASIC
        | {
            "make": None,
            "bash": None,
            "which": None,
            "dpkg-query": not_installed,
            "dpkg": not_installed,
            "apt-get": "echo apt-get must not run >&2; exit 9",
        },
    )
    assert not any(shutil.which(c, path=path) for c in SLURM)
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/root"),
        "VENV_PY": str(VENV_PY),
        "PYTHONPATH": str(work),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        ["make", "run", f"VENV={venv}"], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "slurm" not in out.lower() and "munge" not in out.lower() and "apt-get must not run" not in out, out
    assert "This was a dry-run" in out and "expert_demos" in out, out[-3000:]
    assert calls.read_text().splitlines() == [
        "--cores all --configfile config/config.yaml",
        "--cores 1 --configfile config/config.yaml --report results/report.html",
    ]
