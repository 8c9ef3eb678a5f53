"""The paper path rehearsed on a CPU machine without a download (issue 21): config/rdt1b_libero90.yaml with the
released models' stand-ins in a Hugging Face hub cache (tests/hub_standins.py: the real repositories' file names and
config files, reduced depth where memory or time needs it) and an official-layout LIBERO-90 demo file.

- ``test_paper_config_runs_end_to_end_on_cpu``: real ``snakemake --cores 2`` in a copy of the repository on the paper
  config plus the overlay OVERLAY below (one LIBERO-90 task from a demos folder holding one file, gpus 0, one
  segment of 2 optimizer steps, one episode of 8 steps at one horizon): convert, stats, encode (T5 from the cache:
  tokenizer converted from spiece.model), encode_tasks, train (bf16 as in the paper config, from the cached
  robotics-diffusion-transformer/rdt-170m with the cached SigLIP), export, evaluate, report; and the
  evaluation-only mode: ``robotics-diffusion-transformer/rdt-1b`` by its hub id and by its snapshot folder's path,
  each evaluated for one episode.
- ``test_paper_config_dry_run_through_the_slurm_profile``: ``snakemake -n --profile slurm`` (no --cores) on the paper
  config itself: every train, evaluate, encode and encode_tasks job gets the threads, memory (the profile's
  ``N * attempt`` at the first attempt) and runtime of slurm/config.yaml's set-threads / set-resources, and the GPUs
  the config asks for.

What is not the paper's and why: the training uses the rdt-170m preset (from the released 170M checkpoint's stand-in,
full size) instead of rdt-1b: fp32 weights, gradients, AdamW moments and the EMA of 1.2B parameters need ~25 GB, and
the trainer accepts an init_from only with its preset's architecture, so the rdt-1b stand-in (2 of 28 blocks)
is evaluated but not trained. The T5 and SigLIP stand-ins have 1 layer per stack instead of 24 / 27, at the real
widths (hub_standins says what else is reduced). The dry run's demo files are empty placeholders with the 90 task
names (the plan checks that every task has a file, not what is in it).

Measured on the shared 2-core machine (another CPU-bound job running): the module takes about 3 minutes (stand-ins
25-35 s, the workflow 150-185 s, the dry run 7-13 s). Peak memory, summed over the test's processes, 8.4 GB: the
training job alone (rdt-170m with fp32 weights, gradients, AdamW moments and EMA, bf16 autocast, the SigLIP stand-in)
reaches 7.7 GB RSS during its optimizer steps; the T5 jobs take 1.6-2.5 GB, each evaluation 1.5-3.6 GB.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import hub_standins
from official_layout import write_demo_file
from rdt.libero import suites
from rdt.resources import resource_value
from workflow_helpers import REPO, SNAKEMAKE, copy_repo, current_summary, env_for

pytestmark = [pytest.mark.slow, pytest.mark.sim]

standin_hub = hub_standins.standin_hub  # the module-scoped fixture (built once for both tests)

PAPER = "config/rdt1b_libero90.yaml"
TASK = "KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet"
DEMOS = Path("data/libero/libero_90")  # the paper config's demos.folder
SLURM_RULES = ("train", "evaluate", "encode", "encode_tasks")

# The smallest overlay with which the paper config runs on a 2-core CPU machine without a download, written into the
# copy of the repository (whose hf/ is the stand-in cache's HF_HOME and whose data/libero/libero_90/ holds one
# official-layout demo file). By hand, with this text saved as rehearsal_cpu.yaml ({commit}: hub_standins.COMMITS):
#   python tests/hub_standins.py hf && HF_HOME=$PWD/hf HF_HUB_OFFLINE=1 snakemake --cores 2 \
#       --configfile config/rdt1b_libero90.yaml rehearsal_cpu.yaml
# Everything not set here is the paper config's (bf16, warmup, EMA, every-5th-checkpoint plan, the encoders by id).
# (Inline rather than under tests/data/: .gitignore's data/ would leave a new file there out of a commit.)
OVERLAY = """\
demos:
  tasks: [KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet]    # one LIBERO-90 task (its file: 2 demos)

train:
  gpus: 0                                  # one CPU process
  max_steps: 2                             # one segment of 2 optimizer steps
  checkpointing_period: 2
  model: rdt-170m                          # rdt-1b cannot train here (~25 GB of fp32 weights, grads, AdamW, EMA)
  init_from: robotics-diffusion-transformer/rdt-170m   # the released 170M checkpoint (its stand-in: full size)
  dataloader_num_workers: 0
  effective_batch_size: 1
  per_device_batch_size: 1
  lr_warmup_steps: 1

eval:
  tasks: [KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet]
  exec_horizons: [8]                       # one horizon
  intermediate_horizons: [8]
  episodes_per_task: 1                     # one short episode: one policy call
  intermediate_episodes_per_task: 1
  max_steps: 8
  gpus: 0

# evaluation-only mode: the released checkpoint by its hub id (from the cache) and as a downloaded folder (the same
# snapshot folder by its path); a released checkpoint has no pipeline.json, so encoders and frequency are given
evaluate_checkpoints:
  - name: rdt1b_hub
    path: robotics-diffusion-transformer/rdt-1b
    text_encoder: google/t5-v1_1-xxl
    vision_encoder: google/siglip-so400m-patch14-384
    control_frequency: 20
  - name: rdt1b_folder
    path: hf/hub/models--robotics-diffusion-transformer--rdt-1b/snapshots/{commit}
    text_encoder: google/t5-v1_1-xxl
    vision_encoder: google/siglip-so400m-patch14-384
    control_frequency: 20

report:
  videos: 1
"""


def workflow_env(work: Path, hf_home: Path) -> dict[str, str]:
    return {**env_for(work), **hub_standins.hub_env(hf_home)}


def run_snakemake(work: Path, hf_home: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=work,
        env=workflow_env(work, hf_home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:  # the failed jobs' own logs say why (Snakemake only names them)
        logs = re.findall(r"log: (\S+) \(check log file", proc.stderr)
        tails = "".join(f"\n--- {log}:\n{(work / log).read_text()[-3000:]}" for log in logs if (work / log).is_file())
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n{tails}"
        )
    return proc


# ------------------------------------------------------------------------------------------------ the stand-ins
def _tsv_shapes(name: str) -> dict[str, list[int]]:
    rows = (REPO / "tests" / "data" / name).read_text().splitlines()[1:]
    return {key: json.loads(shape) for key, shape, _ in (row.split("\t") for row in rows)}


def _file_shapes(snapshot: Path) -> dict[str, list[int]]:
    import torch

    state = torch.load(snapshot / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
    assert {v.dtype for v in state.values()} == {torch.bfloat16}  # the released files are all-bf16
    return {k: list(v.shape) for k, v in state.items()}


def check_standins(snapshots: dict[str, Path]) -> None:
    """The RDT stand-ins carry the released key names and shapes (all of them for rdt-170m; for rdt-1b those of the
    blocks that exist and every non-block tensor), and the cache resolves ids to the snapshots."""
    assert _file_shapes(snapshots[hub_standins.RDT_170M]) == _tsv_shapes("rdt170m_state_dict.tsv")
    released = _tsv_shapes("rdt1b_state_dict.tsv")
    kept = {
        k: v
        for k, v in released.items()
        if not (m := re.match(r"model\.blocks\.(\d+)\.", k)) or int(m.group(1)) < hub_standins.RDT_1B_STANDIN_DEPTH
    }
    assert _file_shapes(snapshots[hub_standins.RDT_1B]) == kept
    for repo_id, snapshot in snapshots.items():
        assert snapshot.parent.parent.name == f"models--{repo_id.replace('/', '--')}"
        assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name
        assert all(p.is_symlink() and p.resolve().parent.name == "blobs" for p in snapshot.iterdir())
    t5 = sorted(p.name for p in snapshots[hub_standins.T5_XXL].iterdir())
    assert "spiece.model" in t5 and "tokenizer.json" not in t5 and "pytorch_model.bin" in t5


# ------------------------------------------------------------------------------------------------ end to end
def _benchmarks(results: Path) -> list[tuple[str, float, float]]:
    """(job, seconds, max RSS MB) of every job, from Snakemake's benchmark files."""
    out = []
    for f in sorted((results / "benchmarks").rglob("*")):
        if f.is_file():
            with open(f) as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            if rows:
                rss = rows[-1].get("max_rss", "NA")
                out.append(
                    (
                        str(f.relative_to(results / "benchmarks")),
                        float(rows[-1]["s"]),
                        float(rss) if rss not in ("NA", "-") else float("nan"),
                    )
                )
    return out


def test_paper_config_runs_end_to_end_on_cpu(standin_hub, tmp_path):
    hf_home, snapshots = standin_hub
    check_standins(snapshots)
    work = copy_repo(tmp_path / "repo")
    (work / "hf").symlink_to(hf_home)  # the overlay names the rdt-1b snapshot folder as hf/hub/...
    demos = work / DEMOS
    demos.mkdir(parents=True)
    [task] = suites.select_tasks("libero_90", [TASK])
    write_demo_file(demos / f"{TASK}_demo.hdf5", TASK, task.language, [40, 36], seed=0)  # 128 px, as released

    (work / "rehearsal_cpu.yaml").write_text(OVERLAY.format(commit=hub_standins.COMMITS[hub_standins.RDT_1B]))
    start = time.monotonic()
    proc = run_snakemake(
        work, hf_home, "--cores", "2", "--configfile", PAPER, "rehearsal_cpu.yaml", "--keep-going", timeout=1500
    )
    took = time.monotonic() - start
    results = work / "results"
    bench = _benchmarks(results)
    print(f"rehearsal workflow: {took:.0f} s")
    for job, seconds, rss in bench:
        print(f"  {job:<70} {seconds:7.1f} s  {rss:8.0f} MB")

    # every stage ran once: one segment, three evaluations (the run and the two evaluation-only entries), the report
    text = proc.stdout + proc.stderr
    for rule, count in {
        "convert": 1,
        "stats": 1,
        "encode": 1,
        "encode_tasks": 1,
        "train": 1,
        "evaluate": 3,
        "report": 1,
    }.items():
        ran = len(re.findall(rf"^(?:local)?rule {rule}:$", text, re.M))
        assert ran == count, (rule, ran, text[-3000:])
    assert "(100%) done" in text

    # the training: 2 optimizer steps from the cached rdt-170m, bf16, exported as a loadable checkpoint folder
    [train] = [p for p in (results / "train").iterdir() if p.is_dir()]
    run_yaml = yaml.safe_load((train / "run.yaml").read_text())
    assert run_yaml["init_from"] == hub_standins.RDT_170M and run_yaml["model"] == "rdt-170m"
    assert run_yaml["mixed_precision"] == "bf16" and run_yaml["text_encoder"] == hub_standins.T5_XXL
    metrics = (train / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in metrics[1:]] == ["1", "2"], metrics
    [export] = list(train.glob("export/step-2"))
    assert {"config.json", "model.safetensors", "pipeline.json"} <= {p.name for p in export.iterdir()}
    assert (export / "ema" / "model.safetensors").is_file()
    pipeline = json.loads((export / "pipeline.json").read_text())
    assert pipeline["text_encoder"] == hub_standins.T5_XXL and pipeline["vision_encoder"] == hub_standins.SIGLIP
    assert json.loads((export / "config.json").read_text())["rdt"]["hidden_size"] == 1024

    # one episode per evaluation: the run's final checkpoint and the released checkpoint by id and by folder
    for target, step in (("rdt1b", 2), ("rdt1b_hub", 0), ("rdt1b_folder", 0)):
        summary = json.loads(current_summary(results / target, step, 8).read_text())
        assert summary["overall"]["episodes"] == 1, (target, summary["overall"])
    # the report: summary page, tables and provenance, with a row per evaluation
    report = results / "report"
    for name in ("summary.html", "results.csv", "audit.csv", "provenance.json"):
        assert (report / name).stat().st_size > 0, name
    with open(report / "results.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["task"] == "overall"]
    assert sorted(r["run"] for r in rows) == ["rdt1b", "rdt1b_folder", "rdt1b_hub"], rows
    assert {int(r["episodes"]) for r in rows} == {1}, rows
    shutil.rmtree(results / "train")  # 4 GB of checkpoint and export (pytest keeps its last three tmp folders)


# ------------------------------------------------------------------------------------------------ Slurm dry run
def slurm_jobs(text: str) -> list[dict]:
    """Every job of a dry run's listing: rule, threads and resources as Snakemake would submit them."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?(?:rule|checkpoint) \S+:$)", text, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\S+):", block).group(1)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        fields = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs.append({"rule": rule, "threads": int(threads.group(1)) if threads else 1, **fields})
    return jobs


def test_paper_config_dry_run_through_the_slurm_profile(standin_hub, tmp_path):
    hf_home, _ = standin_hub
    work = copy_repo(tmp_path / "repo")
    demos = work / DEMOS
    demos.mkdir(parents=True)
    for task in suites.tasks("libero_90"):
        (demos / f"{task.name}_demo.hdf5").touch()
    proc = run_snakemake(work, hf_home, "-n", "--profile", "slurm", "--configfile", PAPER, timeout=600)
    jobs = slurm_jobs(proc.stdout)
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / PAPER).read_text())
    by_rule = {rule: [j for j in jobs if j["rule"] == rule] for rule in SLURM_RULES}
    segments = paper["train"]["max_steps"] // paper["train"]["checkpointing_period"]
    assert len(by_rule["train"]) == segments and len(by_rule["encode"]) == len(by_rule["encode_tasks"]) == 1
    assert len(by_rule["evaluate"]) == 14 * 2 + 3, len(by_rule["evaluate"])  # every 5th: 8, 16; the final: 8, 16, 64
    for rule, rule_jobs in by_rule.items():
        want = profile["set-resources"][rule]
        for job in rule_jobs:
            where = (rule, job)
            assert job["threads"] == profile["set-threads"].get(rule, 1), where
            assert float(job["mem_mb"]) == resource_value(want["mem_mb"], rule), where
            assert int(job["runtime"]) == want["runtime"], where
    assert {j["gpu"] for j in by_rule["train"]} == {str(paper["train"]["gpus"])}
    assert {j["gpu"] for j in by_rule["evaluate"]} == {str(paper["eval"]["gpus"])}
    assert all("--exclusive" in j["slurm_extra"] for j in by_rule["train"])
