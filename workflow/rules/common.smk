# Shared helpers: config validation, per-run settings, content keys of shared outputs, code fingerprints.
import copy
import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import rdt.fingerprint
from rdt import train_config
from rdt.errors import UserError
from rdt.utils.atomic import write_text

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
SECTIONS = ("demos", "data", "train", "eval")

validate(config, SCHEMA)

# The rules call `python -m rdt` and `accelerate` of the environment Snakemake runs in (with
# --software-deployment-method conda, the environment of envs/rdt.yaml comes first instead).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def deep_merge(base, override):
    """``base`` with ``override`` applied recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_settings(name, override):
    """The effective settings of one run: the base sections with the run's overrides, validated."""
    merged = {s: deep_merge(config[s], override.get(s, {})) for s in SECTIONS}
    try:
        validate({"results": config["results"], **merged}, SCHEMA)
    except WorkflowError as e:
        raise WorkflowError(f"runs.{name}: the overrides do not fit the schema.\n{e}") from None
    eval_cfg = merged["eval"]
    eval_cfg["suite"] = eval_cfg["suite"] or merged["demos"]["suite"]
    eval_cfg["tasks"] = eval_cfg["tasks"] or merged["demos"]["tasks"]
    return merged


def key_of(settings):
    """Short content key of the settings that determine a shared output."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


RESULTS = config["results"]
RUNS = {name: run_settings(name, override) for name, override in config["runs"].items()}

# Code fingerprints of the modules each job runs (comments and docstrings excluded): a code change reruns the
# stage, a comment edit does not. Snakemake's own `code` trigger sees only the rule's text, not imported modules.
CODE = {
    stage: rdt.fingerprint.fingerprint(module)
    for stage, module in {
        "expert": "rdt.libero.expert",
        "convert": "rdt.libero.convert",
        "stats": "rdt.data.stats",
        "encode": "rdt.lang",
        "train": "rdt.train",
        "evaluate": "rdt.evaluate",
        "report": "rdt.report",
    }.items()
}


# ---- shared stages, keyed by the settings that affect them --------------------------------------------------
def demo_settings(run):
    d = RUNS[run]["demos"]
    if d["source"] == "folder":
        if not d["folder"]:
            raise WorkflowError(f"runs.{run}: demos.source is 'folder' but demos.folder is not set")
        return {"source": "folder", "folder": str(Path(d["folder"]).resolve())}
    return {"source": "expert", "suite": d["suite"], "tasks": [str(t) for t in d["tasks"]],
            "episodes_per_task": d["episodes_per_task"], "max_attempts": d["max_attempts"], "seed": d["seed"],
            "first_init_state": d["first_init_state"]}


def data_settings(run):
    d, s = RUNS[run]["demos"], RUNS[run]["data"]
    return {"demos": demo_settings(run), "suite": d["suite"], "tasks": [str(t) for t in d["tasks"]],
            "demos_per_task": s["demos_per_task"], "min_steps": s["min_steps"]}


def language_settings(run):
    """The instructions of the training data and of the evaluated tasks, and the encoder."""
    e = RUNS[run]["eval"]
    return {"data": key_of(data_settings(run)), "text_encoder": resolved_train(run)["text_encoder"],
            "eval_suite": e["suite"], "eval_tasks": [str(t) for t in e["tasks"]]}


WORKFLOW_TRAIN_KEYS = ("gpus", "max_steps")


@functools.lru_cache(maxsize=None)
def resolved_train(run):
    """Every key of rdt/train_config.py for a run (its defaults for keys not configured), validated there."""
    given = {k: v for k, v in RUNS[run]["train"].items() if k not in WORKFLOW_TRAIN_KEYS}
    given["run"] = run
    for key in ("data", "lang", "stats"):
        given[key] = "unset"
    try:
        return train_config.from_dict(given, source=f"config runs.{run}.train").to_dict()
    except UserError as e:
        raise WorkflowError(str(e)) from None


def train_settings(run):
    """RUN.yaml of a run: the resolved settings with the workflow's data, language and statistics paths."""
    cfg = dict(resolved_train(run))
    cfg.update(data=data_path(run), stats=stats_path(run),
               lang=f"{RESULTS}/cache/language/{key_of(language_settings(run))}/lang.safetensors")
    return cfg


def demos_input(settings):
    """What `convert` reads: the expert's output folder, or the configured folder of demo files."""
    if settings["source"] == "folder":
        return settings["folder"]
    return f"{RESULTS}/cache/demos/{key_of(settings)}"


def data_path(run):
    return f"{RESULTS}/cache/data/{key_of(data_settings(run))}/data.h5"


def stats_path(run):
    return f"{RESULTS}/cache/data/{key_of(data_settings(run))}/dataset_stat.json"


def language_path(run):
    return train_settings(run)["lang"]


DEMOS = {key_of(demo_settings(r)): demo_settings(r) for r in RUNS if demo_settings(r)["source"] == "expert"}
DATA = {key_of(data_settings(r)): data_settings(r) for r in RUNS}
LANGUAGE = {key_of(language_settings(r)): language_settings(r) for r in RUNS}


# ---- training segments ----------------------------------------------------------------------------------------
def segment_steps(run):
    """Steps at which training stops, exports a checkpoint and hands over to the next segment."""
    period, last = resolved_train(run)["checkpointing_period"], RUNS[run]["train"]["max_steps"]
    steps = list(range(period, last + 1, period))
    if not steps or steps[-1] != last:
        steps.append(last)
    return steps


def export_path(run, step):
    return f"{RESULTS}/{run}/train/export/step-{step}"


def previous_export(wildcards):
    steps = segment_steps(wildcards.run)
    step = int(wildcards.step)
    if step not in steps:
        raise WorkflowError(f"run {wildcards.run}: step {step} is not a segment end ({steps})")
    i = steps.index(step)
    return [export_path(wildcards.run, steps[i - 1])] if i else []


# ---- evaluation targets ----------------------------------------------------------------------------------------
CHECKPOINTS = {c["name"]: c for c in config["evaluate_checkpoints"]}
BASE = run_settings("base", {})
clash = sorted(set(CHECKPOINTS) & set(RUNS))
if clash:
    raise WorkflowError(f"evaluate_checkpoints: names {clash} are also names of runs; use distinct names")


def eval_settings(target):
    """Evaluation settings of a run or of an evaluation-only checkpoint (these use the base settings)."""
    e = (RUNS[target] if target in RUNS else BASE)["eval"]
    return {k: e[k] for k in ("suite", "tasks", "episodes_per_task", "max_steps", "weights", "seed", "videos_per_task")}


def checkpoint_text_encoder(name):
    """Text encoder of an evaluation-only checkpoint: configured, or read from its pipeline.json."""
    entry = CHECKPOINTS[name]
    if entry.get("text_encoder"):
        return entry["text_encoder"]
    pipeline = Path(entry["path"]) / "pipeline.json"
    try:
        return json.loads(pipeline.read_text())["text_encoder"]
    except (OSError, ValueError, KeyError):
        raise WorkflowError(f"evaluate_checkpoints.{name}: {pipeline} does not name the text encoder; "
                            "set text_encoder for this entry") from None


def task_language_settings(name):
    e = eval_settings(name)
    return {"suite": e["suite"], "tasks": [str(t) for t in e["tasks"]],
            "text_encoder": checkpoint_text_encoder(name)}


TASK_LANGUAGE = {key_of(task_language_settings(n)): task_language_settings(n) for n in CHECKPOINTS}


def instructions_language_path(name):
    return f"{RESULTS}/cache/language/{key_of(task_language_settings(name))}/tasks.safetensors"


def eval_gpus(target):
    return (RUNS[target] if target in RUNS else BASE)["eval"]["gpus"]


def eval_steps(target):
    return segment_steps(target) if target in RUNS else [CHECKPOINTS[target]["step"]]


def horizons(target):
    return (RUNS[target] if target in RUNS else BASE)["eval"]["exec_horizons"]


def summary_path(target, step, horizon):
    return f"{RESULTS}/{target}/eval/step-{step}/h{horizon}/summary.json"


def summaries(target):
    return [summary_path(target, s, h) for s in eval_steps(target) for h in horizons(target)]


def checkpoint_input(wildcards):
    """The checkpoint folder evaluated: a run's exported step, or an evaluation-only checkpoint."""
    if wildcards.target in RUNS:
        return export_path(wildcards.target, wildcards.step)
    return CHECKPOINTS[wildcards.target]["path"]


def eval_language(wildcards):
    if wildcards.target in RUNS:
        return language_path(wildcards.target)
    return instructions_language_path(wildcards.target)


def eval_stats(wildcards):
    if wildcards.target in RUNS:
        return stats_path(wildcards.target)
    return CHECKPOINTS[wildcards.target]["stats"] or []


def target_settings(target):
    """What the report audits and records as provenance: the target's effective settings."""
    if target in RUNS:
        return {"kind": "run", "gpus": RUNS[target]["train"]["gpus"], "exec_horizons": horizons(target),
                "train": {k: v for k, v in train_settings(target).items()}, "workflow": RUNS[target]}
    return {"kind": "checkpoint", "checkpoint": CHECKPOINTS[target], "exec_horizons": horizons(target),
            "eval": eval_settings(target)}


TARGETS = list(RUNS) + list(CHECKPOINTS)


def report_inputs():
    return [f"{RESULTS}/report/results.csv"]
