"""The SLURM walk-through as printed (docs/cluster.md, linked from README; issue 15): the commands are read from its
"On a SLURM cluster" code
block, so the test fails when README drifts, and the smoke run among them (``--profile slurm --profile slurm/small``
with ``config/cluster_smoke.yaml``, after README's ``source .venv/bin/activate && export SLURM_PARTITION=...
SLURM_ACCOUNT=...`` line) runs on the local single-node Slurm (tests/slurm_cluster.py, which has a partition of the
name README exports). Only what the local cluster needs is added to README's profile line: squeue for job status
(no accounting database), short status-check intervals, and no retries (a failure shows at once). The module-load,
tmux and download lines, and the paper-scale run that needs them, are checked for their form only."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import pytest
import yaml

from rdt.cluster import capped_threads_error
from rdt.resources import resource_value
from workflow_helpers import REPO, SNAKEMAKE, copy_repo, current_summary, env_for

README = REPO / "docs" / "cluster.md"  # the cluster guide README links to
SECTION = "## On a SLURM cluster"
SMOKE_CONFIG = "config/cluster_smoke.yaml"
PAPER_CONFIG = "config/rdt1b_libero90.yaml"
LOCAL_CLUSTER_ARGS = (
    "--slurm-status-command squeue --slurm-init-seconds-before-status-checks 2"
    " --seconds-between-status-checks 3 --retries 0"
)
LAUNCH_WARNING = "were not passed to `accelerate launch`"


def walkthrough() -> list[str]:
    """The first code block of README's cluster section, one command per line, comments removed."""
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = []
    for line in section.splitlines():
        if line.startswith("    "):
            lines.append(re.sub(r"\s+#.*$", "", line[4:]).strip())
        elif lines:
            break
    assert lines, f"no indented code block under {SECTION!r} in README.md"
    return lines


def smoke_commands(lines: list[str]) -> tuple[str, str, str]:
    """README's environment line (venv and SLURM_* exports) and the smoke run's two snakemake lines."""
    [env_line] = [line for line in lines if "export SLURM_PARTITION=" in line]
    smoke = [line for line in lines if line.startswith("snakemake ") and "cluster_smoke" in line]
    assert len(smoke) == 2, smoke
    run, report = smoke
    return env_line, run, report


def exports(env_line: str) -> dict[str, str]:
    words = shlex.split(env_line.split("export", 1)[1])
    return dict(w.split("=", 1) for w in words)


def test_walkthrough_is_one_consistent_sequence():
    """Cheap checks of README's block: the smoke run uses the same profile plus the small overlay, the paper run is
    the same line without the overlay and with the paper config; the files it names exist; tmux starts before the
    venv and the exports (a tmux session does not always inherit them); the report lines match their runs."""
    lines = walkthrough()
    env_line, run, report = smoke_commands(lines)
    assert env_line.startswith("source .venv/bin/activate && export "), env_line
    assert set(exports(env_line)) == {"SLURM_PARTITION", "SLURM_ACCOUNT"}
    assert run == f"snakemake --profile slurm --profile slurm/small --configfile {SMOKE_CONFIG}", run
    assert report == f"snakemake --configfile {SMOKE_CONFIG} --report results/cluster_smoke/report.html", report
    paper = f"snakemake --profile slurm --configfile {PAPER_CONFIG}"
    assert paper in lines and run.replace(" --profile slurm/small", "").replace(SMOKE_CONFIG, PAPER_CONFIG) == paper
    assert f"snakemake --configfile {PAPER_CONFIG} --report results/report.html" in lines
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(p))
        for p in ("module load", "tmux new", "source .venv/bin/activate", "snakemake", "hf download")
    ]
    assert order == sorted(order), lines
    assert lines.index(paper) > max(i for i, line in enumerate(lines) if line.startswith("hf download"))
    for path in ("slurm/config.yaml", "slurm/small/config.yaml", SMOKE_CONFIG, PAPER_CONFIG):
        assert (REPO / path).is_file(), path
    assert yaml.safe_load((REPO / SMOKE_CONFIG).read_text())["results"] == "results/cluster_smoke"
    # the demos download lands where the paper config reads them
    [demos] = [line for line in lines if "LIBERO-datasets" in line]
    words = shlex.split(demos)
    include, local_dir = words[words.index("--include") + 1], words[words.index("--local-dir") + 1]
    folder = yaml.safe_load((REPO / PAPER_CONFIG).read_text())["demos"]["folder"]
    assert folder == f"{local_dir}/{include.split('/')[0]}", (folder, demos)


def cluster_rules() -> set[str]:
    """Rules of the workflow that run as Slurm jobs (all but the ones marked localrule)."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]:
            name, body = block.split(":", 1)
            if not re.search(r"^\s+localrule: True", body.split("\nrule ")[0], flags=re.M):
                rules.add(name.strip())
    return rules


def test_small_overlay_replaces_every_request_and_keeps_the_rest():
    """slurm/small sets only the per-rule keys, and for every rule that becomes a Slurm job (Snakemake replaces
    set-threads / set-resources as a whole, so a missing rule would fall back to its own, larger request): 1 CPU,
    at most 4 GB and 30 minutes, no exclusive node."""
    overlay = yaml.safe_load((REPO / "slurm" / "small" / "config.yaml").read_text())
    assert set(overlay) == {"set-threads", "set-resources"}
    rules = cluster_rules()
    assert {"train", "evaluate", "expert_demos", "convert", "stats", "encode", "encode_tasks", "report"} <= rules
    assert set(overlay["set-threads"]) == rules and set(overlay["set-resources"]) == rules
    assert set(overlay["set-threads"].values()) == {1}
    for rule, res in overlay["set-resources"].items():
        first = resource_value(res["mem_mb"], rule)
        assert set(res) == {"mem_mb", "runtime"} and first <= 4000 and res["runtime"] <= 30, (rule, res)
        assert resource_value(res["mem_mb"], rule, attempt=2) == 2 * first, (rule, res)  # a retry asks for more
    base = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert set(base["set-resources"]) <= rules and set(base["set-threads"]) <= rules


def planned_jobs(text: str) -> dict[str, dict]:
    """rule -> its threads and resources as a dry run prints them (the last job of each rule)."""
    jobs = {}
    for block in re.split(r"\n(?:rule|checkpoint) ", text)[1:]:
        rule = block.split(":", 1)[0].strip()
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        fields = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs[rule] = {"threads": int(threads.group(1)) if threads else 1, **fields}
    return jobs


def test_cores_never_shrinks_what_the_profile_asks_for(tmp_path):
    """Issue 21: `--cores all` on a 2-core login node used to submit every job with 2 CPUs, silently. The profile
    sets cores itself, so the guide's command (no --cores) plans set-threads' values; a --cores below them is an error
    that says why, and --max-threads caps on purpose."""
    work = copy_repo(tmp_path / "repo")

    def dry(*args):
        return subprocess.run(
            [SNAKEMAKE, "-n", "--profile", "slurm", "--configfile", SMOKE_CONFIG, *args],
            cwd=work,
            env=env_for(work),
            capture_output=True,
            text=True,
            timeout=300,
        )

    base = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    done = dry()
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = planned_jobs(done.stdout)
    for rule in ("train", "evaluate", "expert_demos"):
        assert jobs[rule]["threads"] == base["set-threads"][rule], (rule, jobs[rule])
    # memory at the first attempt (the profile's "N * attempt": each retry asks for more)
    assert float(jobs["train"]["mem_mb"]) == resource_value(base["set-resources"]["train"]["mem_mb"], "train")
    assert jobs["train"]["runtime"] == str(base["set-resources"]["train"]["runtime"])
    capped = dry("--cores", "2")
    assert capped.returncode != 0
    said = capped.stdout + capped.stderr
    assert "--cores 2 caps the threads of every cluster job at 2" in said and "train: 64" in said
    on_purpose = dry("--cores", "2", "--max-threads", "2")
    assert on_purpose.returncode == 0 and planned_jobs(on_purpose.stdout)["train"]["threads"] == 2


def test_capped_threads_error_names_each_rule_it_would_shrink():
    assert capped_threads_error(2, {"train": 16, "evaluate": 8, "stats": 1}).count(":") >= 2
    assert "stats" not in capped_threads_error(2, {"train": 16, "stats": 1})
    assert capped_threads_error(16, {"train": 16}) is None and capped_threads_error(None, {"train": 16}) is None
    assert capped_threads_error(2, {"train": 16}, max_threads=2) is None


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.sim
def test_readme_walkthrough_smoke_run_on_the_local_slurm(slurm_cluster, tmp_path):
    env_line, run, report = smoke_commands(walkthrough())
    work = copy_repo(tmp_path / "repo")
    (work / ".venv").symlink_to(REPO / ".venv")
    script = "\n".join([env_line, f"{run} {LOCAL_CLUSTER_ARGS}", report])
    env = {k: v for k, v in slurm_cluster.env.items() if k not in ("SLURM_PARTITION", "SLURM_ACCOUNT", "VIRTUAL_ENV")}
    env |= {"PYTHONPATH": str(work), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    earlier = {j["JobId"] for j in slurm_cluster.completed_jobs()}
    earlier |= {line.split()[0] for line in slurm_cluster.squeue().splitlines()}
    start = time.monotonic()
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    took = time.monotonic() - start
    print(f"README smoke run on the local Slurm: {took:.0f} s\n{script}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]

    # every job of the workflow ran in Slurm, in README's partition and account, asking for the small overlay's share
    jobs = [j for j in slurm_cluster.completed_jobs() if j["JobId"] not in earlier]
    remote = 1 + 1 + 1 + 1 + 1 + 2 + 1 + 1  # expert, convert, stats, encode, encode_tasks, 2 segments, eval, report
    assert len(jobs) == remote, jobs
    assert {j["JobState"] for j in jobs} == {"COMPLETED"} and {j["ExitCode"] for j in jobs} == {"0:0"}, jobs
    wanted = exports(env_line)
    queue = subprocess.run(
        [
            "squeue",
            "-h",
            "-t",
            "all",
            "-O",
            "JobID:12,Partition:16,Account:24,NumCPUs:6,MinMemory:12,TimeLimit:12,State:12",
        ],
        capture_output=True,
        text=True,
        env=slurm_cluster.env,
        check=True,
    ).stdout
    mine = [line.split() for line in queue.splitlines() if line.split()[0] not in earlier]
    assert len(mine) == remote, queue
    for job_id, partition, account, cpus, memory, limit, state in mine:
        assert (partition, account) == (wanted["SLURM_PARTITION"], wanted["SLURM_ACCOUNT"]), (
            job_id,
            partition,
            account,
        )
        assert cpus == "1" and memory == "4000M" and limit == "30:00" and state == "COMPLETED", (
            job_id,
            cpus,
            memory,
            limit,
        )

    results = work / "results" / "cluster_smoke"
    assert (results / "report.html").stat().st_size > 0
    summary = json.loads(current_summary(results / "default", 4, 8).read_text())
    assert summary["overall"]["episodes"] == 1, summary["overall"]
    [metrics] = list((results / "train").glob("*/metrics.csv"))
    assert [row.split(",")[0] for row in metrics.read_text().splitlines()[1:]] == ["1", "2", "3", "4"]
    # the training logs (one per segment) start with the project's lines, not accelerate's launcher warning
    logs = sorted((results / "logs" / "train").glob("*/step-*.log"))
    assert [p.name for p in logs] == ["step-2.log", "step-4.log"], logs
    for log in logs:
        text = log.read_text()
        assert LAUNCH_WARNING not in text and "accelerate" not in text.splitlines()[0].lower(), text[:2000]
    # README: the executor plugin keeps only the Slurm logs of failed jobs (and removes the folders left empty)
    slurm_logs = work / "results" / "logs" / "slurm"
    assert not slurm_logs.exists() or not list(slurm_logs.rglob("*.log")), list(slurm_logs.rglob("*.log"))
