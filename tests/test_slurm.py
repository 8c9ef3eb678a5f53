"""The workflow on a real single-node Slurm (tests/slurm_cluster.py) through the Snakemake SLURM executor plugin:
the tiny configuration runs to the end as Slurm jobs and gives the same outputs as the local run; the training
job's sbatch request carries the configured GPUs; the profile's partition and account come from SLURM_PARTITION and
SLURM_ACCOUNT, and an unset one is left to Slurm."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rdt.resources import resource_value
from slurm_cluster import PARTITION
from workflow_helpers import REPO, SNAKEMAKE, TINY, copy_repo, current_summary, env_for, variant, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def processed_profile(env: dict[str, str]) -> dict:
    """The repository's profile as Snakemake reads it (a YTE template) with ``env`` as the environment."""
    import io
    import os
    from unittest import mock

    import yte

    with mock.patch.dict(os.environ, env, clear=True):
        return yte.process_yaml(io.StringIO((REPO / "slurm" / "config.yaml").read_text()), require_use_yte=True)


def test_profile_of_the_repository():
    profile = processed_profile({"SLURM_PARTITION": "gpu", "SLURM_ACCOUNT": "myproject"})
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_partition"] == "gpu"
    assert profile["default-resources"]["slurm_account"] == "myproject"
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
    assert profile["set-threads"]["evaluate"] > 1 and profile["set-threads"]["train"] > 1
    assert profile["set-resources"]["train"]["runtime"] > profile["set-resources"]["evaluate"]["runtime"] / 2
    # unset or empty: the resources are left out (the plugin then submits without -p / -A: Slurm's defaults),
    # never the literal text "$SLURM_ACCOUNT"
    for env in ({}, {"SLURM_PARTITION": "", "SLURM_ACCOUNT": ""}):
        resources = processed_profile(env)["default-resources"]
        assert "slurm_account" not in resources and "slurm_partition" not in resources, resources
        first = resource_value(resources["mem_mb"], "default-resources mem_mb")
        assert first > 0 and resource_value(resources["mem_mb"], "default-resources mem_mb", attempt=2) == 2 * first


def slurm_profile(root: Path) -> Path:
    """The repository's profile for the local cluster: the template's partition and account entries kept (the
    partition comes from SLURM_PARTITION, see :func:`cluster_env`; no account), small memory and thread requests
    that fit a 2-CPU node, squeue for job status."""
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["__use_yte__"] is True
    # memory as the profile writes it: grown with the attempt (the executor evaluates the expression)
    profile["default-resources"].update(mem_mb="500 * attempt", runtime=30)
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["set-resources"] = {rule: {"mem_mb": "500 * attempt", "runtime": 30} for rule in profile["set-resources"]}
    profile.update(
        {
            "jobs": 2,
            "latency-wait": 5,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            "seconds-between-status-checks": 3,
            "slurm-logdir": "results/logs/slurm",
            "retries": 0,
        }
    )
    folder = root / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def cluster_env(cluster, work: Path, **slurm: str) -> dict[str, str]:
    """Environment of a Snakemake run on the local cluster: SLURM_PARTITION / SLURM_ACCOUNT as given (default: the
    test partition, no account), any inherited value removed."""
    env = {k: v for k, v in (env_for(work) | cluster.env).items() if k not in ("SLURM_PARTITION", "SLURM_ACCOUNT")}
    return env | ({"SLURM_PARTITION": PARTITION} if not slurm else slurm)


@pytest.mark.parametrize("account", [None, "rdtproj"], ids=["account-unset", "account-set"])
def test_profile_account_and_partition_as_submitted(slurm_cluster, tmp_path, account):
    """The repository's profile with SLURM_ACCOUNT / SLURM_PARTITION unset, and with both set, submitting one small
    job through the executor plugin. Unset: the sbatch call has no -A (the plugin finds no account to guess in sacct
    and submits without one) and `-p` names Slurm's default partition (the one sinfo marks with `*`), and Slurm
    files the job under no account. Set: `-A rdtproj -p debug`, and Slurm records both. The local cluster has no
    accounting database (slurmdbd), so the plugin's account validation finds no associations and lets any name
    through, and Slurm does not enforce accounts: that a wrong account is *rejected* cannot be shown here, what is
    shown is exactly what the plugin submits."""
    work = tmp_path / "wf"
    work.mkdir()
    (work / "Snakefile").write_text('rule hello:\n    output: "hello.txt"\n    shell: "echo hello > {output}"\n')
    profile = slurm_profile(tmp_path)
    slurm = {} if account is None else {"SLURM_ACCOUNT": account, "SLURM_PARTITION": PARTITION}
    env = cluster_env(slurm_cluster, work, **slurm)
    if account is None:
        env = {k: v for k, v in env.items() if k != "SLURM_PARTITION"}
    known = {line.split()[0] for line in slurm_cluster.squeue().splitlines()}
    proc = subprocess.run(
        [SNAKEMAKE, "--profile", str(profile), "--verbose"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert (work / "hello.txt").read_text() == "hello\n"
    assert "$SLURM" not in out
    [sbatch] = [line for line in out.splitlines() if line.lstrip().startswith("sbatch call:")]
    queue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-O", "JobID:12,Account:24,Partition:16,State:12"],
        capture_output=True,
        text=True,
        env=slurm_cluster.env,
        check=True,
    ).stdout
    [job] = [line.split() for line in queue.splitlines() if line.split()[0] not in known]
    if account is None:
        assert " -A " not in sbatch and f" -p {PARTITION}" in sbatch, sbatch  # PARTITION is the Default=YES one
        assert "No SLURM account given" in out
        assert job[1] == "(null)" and job[2] == PARTITION, job  # Slurm's default partition, no account
    else:
        assert f" -A {account}" in sbatch and f" -p {PARTITION}" in sbatch, sbatch
        assert job[1] == account and job[2] == PARTITION, job
    assert job[3] == "COMPLETED", job


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_hdf5(a: Path, b: Path) -> None:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            if isinstance(fa[name], h5py.Dataset):
                assert np.array_equal(fa[name][()], fb[name][()]), name
            attrs_a = {k: v for k, v in fa[name].attrs.items() if k != "created_by"}
            attrs_b = {k: v for k, v in fb[name].attrs.items() if k != "created_by"}
            assert attrs_a.keys() == attrs_b.keys()
            for k in attrs_a:
                assert np.array_equal(np.asarray(attrs_a[k]), np.asarray(attrs_b[k])), (name, k)


@pytest.mark.sim
def test_tiny_workflow_runs_as_slurm_jobs_with_the_local_results(slurm_cluster, tiny_run, tmp_path):
    work = copy_repo(tmp_path / "repo")
    write_config(work / "config" / "config.yaml", TINY)
    # the scripted demos are the one input both runs share (the expert is not part of what is compared)
    shutil.copytree(tiny_run / "results" / "cache" / "demos", work / "results" / "cache" / "demos")
    profile = slurm_profile(tmp_path)
    earlier = {j["JobId"] for j in slurm_cluster.completed_jobs()}  # jobs of other tests on this cluster
    earlier |= {line.split()[0] for line in slurm_cluster.squeue().splitlines()}
    proc = subprocess.run(
        [SNAKEMAKE, "--profile", str(profile)],
        cwd=work,
        env=cluster_env(slurm_cluster, work),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    # every job ran in Slurm: the completion log and squeue (MinJobAge 600 s) list them, all COMPLETED
    jobs = [j for j in slurm_cluster.completed_jobs() if j["JobId"] not in earlier]
    remote = 1 + 1 + 1 + 1 + 2 + 6 + 1  # convert, stats, encode, encode_tasks, 2 segments, 6 evaluations, report
    assert len(jobs) == remote, jobs
    assert {j["JobState"] for j in jobs} == {"COMPLETED"} and {j["ExitCode"] for j in jobs} == {"0:0"}
    queue = [line for line in slurm_cluster.squeue().splitlines() if line.split()[0] not in earlier]
    assert len(queue) == remote and all(line.split()[2] == "COMPLETED" for line in queue)
    assert "sched: Allocate JobId=" in slurm_cluster.ctld_log.read_text()
    assert "Job stats" in proc.stderr + proc.stdout

    local, remote_results = tiny_run / "results", work / "results"
    data = sorted((local / "cache" / "data").glob("*/data.h5"))
    assert len(data) == 1
    rel = data[0].relative_to(local)
    assert_same_hdf5(local / rel, remote_results / rel)
    stats = rel.parent / "dataset_stat.json"
    assert json.loads((local / stats).read_text()) == json.loads((remote_results / stats).read_text())
    [m_local], [m_slurm] = ([table(p) for p in (r / "train").glob("*/metrics.csv")] for r in (local, remote_results))
    assert [r["step"] for r in m_local] == [r["step"] for r in m_slurm] == ["1", "2", "3", "4"]
    for col in ("loss", "lr", "grad_norm"):
        np.testing.assert_allclose(
            [float(r[col]) for r in m_slurm], [float(r[col]) for r in m_local], rtol=1e-5, err_msg=col
        )
    for step in (2, 4):
        for h in (8, 16, 64):
            part = current_summary(local / "default", step, h).relative_to(local)
            a, b = json.loads((local / part).read_text()), json.loads((remote_results / part).read_text())
            assert a["overall"] == b["overall"] and a["tasks"] == b["tasks"], part
    assert (remote_results / "report" / "success_vs_step.png").stat().st_size > 0


def test_training_job_requests_the_configured_gpus(slurm_cluster, tiny_run, tmp_path):
    """Submit the first training segment with train.gpus = 4 (the cluster has 8 scheduler-only GPUs): the job
    asks Slurm for 4 GPUs on one node (sbatch --gpus=4 --nodes=1; squeue/scontrol show the GPU request).
    Stopped once seen."""
    work = copy_repo(tmp_path / "repo")
    write_config(work / "config" / "config.yaml", TINY)
    shutil.copytree(tiny_run / "results" / "cache", work / "results" / "cache")  # upstream outputs, mtimes kept
    cfg = variant(work, "gpus", lambda c: c["train"].update(gpus=4, effective_batch_size=8))
    profile = slurm_profile(tmp_path)
    from rdt.plan import Plan  # the training's folder: results/train/<key of its settings>

    export = f"{Plan(yaml.safe_load(open(cfg))).train_dir('default')}/export/step-2"
    known = {line.split()[0] for line in slurm_cluster.squeue().splitlines()}
    log = tmp_path / "snakemake.log"
    with open(log, "w") as out_file:
        proc = subprocess.Popen(
            [SNAKEMAKE, "--profile", str(profile), "--configfile", cfg, "--verbose", export],
            cwd=work,
            env=cluster_env(slurm_cluster, work),
            stdout=out_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline, seen = time.monotonic() + 180, None
        while time.monotonic() < deadline and seen is None:
            new = [line for line in slurm_cluster.squeue().splitlines() if line.split()[0] not in known]
            seen = next((line for line in new if "gres:gpu:4" in line), None)
            time.sleep(1)
        assert seen is not None, f"no training job with gres:gpu:4 in squeue: {slurm_cluster.squeue()}"
        job_id = seen.split()[0]
        info = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, env=slurm_cluster.env
        ).stdout
        assert "TresPerJob=gres:gpu:4" in info and "NumNodes=1" in info
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        subprocess.run(["scancel", "--quiet", "--partition", PARTITION], env=slurm_cluster.env)
    out = log.read_text()
    sbatch = [line for line in out.splitlines() if "sbatch" in line and "--gpus=4" in line]
    assert sbatch, out[-4000:]
    assert "--nodes=1" in sbatch[0] and f"-p {PARTITION}" in sbatch[0]
