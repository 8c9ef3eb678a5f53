"""The results layout, in one place: every path under the workflow's results folder (``results`` in the config).

    <results>/
        cache/demos/<key>/                       demos_dir           the scripted expert's demos (rdt expert)
            expert_summary.json                  EXPERT_SUMMARY      what it made, with what code, their digest
        cache/data/<key>/data.h5                 data_file           the training file (rdt convert)
        cache/data/<key>/dataset_stat.json       stats_file          its statistics (rdt stats)
        cache/language/<key>/lang.safetensors    language_file       training language (rdt encode)
        cache/language/<key>/tasks.safetensors   task_language_file  the evaluated tasks' language
        train/<key>/                             train_dir           one training, shared by the runs it serves:
            run.yaml                             run_config          its RUN.yaml (rdt train --config)
            .run-<key>                           run_marker          the key of its RUN.yaml (rdt.plan.documents)
            export/step-<S>/                     export_dir          an evaluation checkpoint (rdt train)
        <target>/                                run_dir             a run, replay run or evaluation-only checkpoint:
            settings.json                        settings_file       its settings document (rdt.plan.documents)
            .settings-<key>                      settings_marker     the document's key (rdt.plan.documents)
            eval/step-<S>/h<H>/                  eval_dir            one checkpoint at one execution horizon:
                summary-<key>.json               summary_path        one evaluation request (rdt evaluate), read by
                                                                     rdt report; <key>: rdt.plan.Plan.eval_key
                eval-<key>.yaml                  eval_config_path    its settings (rdt evaluate --config)
                episodes.jsonl                                       every episode run there, under any identity
        report/<file>                            report_file         the report (rdt.report.names names its files)
        .report-<key>                            report_marker       the key of what the report shows (outside report/,
                                                                     which the report replaces as a whole)
        logs/<rule>/<job>.log                    log_file            each workflow job's log
        benchmarks/<rule>/<job>.tsv              benchmark_file      each workflow job's time and memory

``<key>``: the content key of a cache entry or training (rdt.plan.keys); a marker's: of what decides a file whose
inputs alone cannot show a change (e.g. a setting reverted without Snakemake's metadata). ``<job>``: the job's
wildcards, e.g. ``<key>/step-<S>`` or ``<target>/step-<S>-h<H>-<key>`` (:func:`job_name`). The files inside a
training folder (metrics.csv, checkpoints/, tensorboard/) are named by rdt.training.run_folder, those of a
checkpoint folder (pipeline.json, ...) by rdt.model.checkpoint, those of an evaluation folder (episodes.jsonl,
videos/) by rdt.evaluation.ledger; the folders holding them are built here.

The plan (rdt/plan/), the workflow's rules, the trainer, the evaluator, the report, the results bundles and the
scripts build their paths here. The path functions take ``str`` (also Snakemake wildcard patterns such as
``"{key}"``) and return ``str``, or take a ``Path`` and return a ``Path``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

#: the top-level folders of the results folder (no target may take these names: rdt.plan.checks)
CACHE, TRAIN, REPORT, LOGS, BENCHMARKS = "cache", "train", "report", "logs", "benchmarks"
RESERVED = (CACHE, LOGS, BENCHMARKS, REPORT, TRAIN)
#: the cache's folders, one per shared stage
DEMOS, DATA, LANGUAGE = "demos", "data", "language"
DATA_FILE, STATS_FILE = "data.h5", "dataset_stat.json"
LANGUAGE_FILE, TASK_LANGUAGE_FILE = "lang.safetensors", "tasks.safetensors"
RUN_CONFIG = "run.yaml"
#: the scripted expert's record in its demos folder: written by rdt.libero.expert, read by the plan (rdt.plan.demos)
EXPERT_SUMMARY = "expert_summary.json"
SETTINGS_FILE = "settings.json"
SETTINGS_MARKER, REPORT_MARKER, RUN_MARKER = ".settings-", ".report-", ".run-"  # + the key (rdt.plan.documents)
LOG_SUFFIX, BENCHMARK_SUFFIX = ".log", ".tsv"
#: a checkpoint folder's files (ours and the released ones'): read by rdt.model.checkpoint, by the plan before any
#: model code loads, and by the bundle writer
CONFIG_FILE, SAFETENSORS_FILE, BIN_FILE = "config.json", "model.safetensors", "pytorch_model.bin"
EMA_FILE, PIPELINE_FILE = "ema/model.safetensors", "pipeline.json"
CHECKPOINT_FILES = (CONFIG_FILE, PIPELINE_FILE, SAFETENSORS_FILE, BIN_FILE, EMA_FILE)
#: a training folder's TensorBoard events, and each evaluated run's success beside them
TENSORBOARD = "tensorboard"
EXPORT = "export"
EVAL = "eval"
SUMMARY = "summary.json"  # the name without a request key (rdt evaluate run by hand)
SUMMARY_GLOB = "summary*.json"
STEP_DIR = re.compile(r"^step-(\d+)$")
HORIZON_DIR = re.compile(r"^h(\d+)$")

P = TypeVar("P", str, Path)


def step_name(step: int | str) -> str:
    return f"step-{step}"


def horizon_name(horizon: int | str) -> str:
    return f"h{horizon}"


def _join(base: P, *parts: str) -> P:
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return "/".join([os.fspath(base).rstrip("/"), *parts])


def job_name(*parts: int | str) -> str:
    """A job's name in its log and benchmark files: its wildcards joined by ``-`` (``step-<S>-h<H>-<key>``)."""
    return "-".join(map(str, parts))


def eval_job_name(step: int | str, horizon: int | str, key: str) -> str:
    """An evaluation job's name: ``step-<S>-h<H>-<key>``."""
    return job_name(step_name(step), horizon_name(horizon), key)


# ---------------------------------------------------------------------------------------------------------- the cache
def cache_dir(results: P, stage: str) -> P:
    """``<results>/cache/<stage>`` (stage: demos, data or language)."""
    return _join(results, CACHE, stage)


def demos_dir(results: P, key: str) -> P:
    """``<results>/cache/demos/<key>``: the scripted expert's demo files."""
    return _join(cache_dir(results, DEMOS), key)


def data_dir(results: P, key: str) -> P:
    """``<results>/cache/data/<key>``."""
    return _join(cache_dir(results, DATA), key)


def data_file(results: P, key: str) -> P:
    """``<results>/cache/data/<key>/data.h5``: the training file."""
    return _join(data_dir(results, key), DATA_FILE)


def stats_file(results: P, key: str) -> P:
    """``<results>/cache/data/<key>/dataset_stat.json``: the training file's statistics."""
    return _join(data_dir(results, key), STATS_FILE)


def language_dir(results: P, key: str) -> P:
    """``<results>/cache/language/<key>``."""
    return _join(cache_dir(results, LANGUAGE), key)


def language_file(results: P, key: str) -> P:
    """``<results>/cache/language/<key>/lang.safetensors``: a training file's instruction embeddings."""
    return _join(language_dir(results, key), LANGUAGE_FILE)


def task_language_file(results: P, key: str) -> P:
    """``<results>/cache/language/<key>/tasks.safetensors``: the evaluated tasks' instruction embeddings."""
    return _join(language_dir(results, key), TASK_LANGUAGE_FILE)


# ---------------------------------------------------------------------------------------------------------- trainings
def train_dir(results: P, key: str) -> P:
    """``<results>/train/<key>``: one training folder."""
    return _join(results, TRAIN, key)


def run_config(train_folder: P) -> P:
    """``<train_folder>/run.yaml``: the training's RUN.yaml."""
    return _join(train_folder, RUN_CONFIG)


# ------------------------------------------------------------------------------------------------------------ targets
def run_dir(results: P, target: str) -> P:
    """``<results>/<target>``: the folder of a run, replay run or evaluation-only checkpoint."""
    return _join(results, target)


def settings_file(run_folder: P) -> P:
    """``<run_folder>/settings.json``: the target's settings document."""
    return _join(run_folder, SETTINGS_FILE)


def own_train_dir(run_folder: P) -> P:
    """``<run_folder>/train``: the training folder of a run folder whose settings document names none."""
    return _join(run_folder, TRAIN)


# --------------------------------------------------------------------------------------------------- the report, jobs
def run_marker(train_folder: P, key: str) -> P:
    """``<train_folder>/.run-<key>``: the key of the training's RUN.yaml, the input that makes run.yaml be written
    again when it changes (bookkeeping keys, or the paths of a moved results folder; only the current one is kept)."""
    return _join(train_folder, f"{RUN_MARKER}{key}")


def settings_marker(run_folder: P, key: str) -> P:
    """``<run_folder>/.settings-<key>``: the key of the target's settings document, the input that makes
    settings.json be written again when its document changes (only the current marker is kept)."""
    return _join(run_folder, f"{SETTINGS_MARKER}{key}")


def report_marker(results: P, key: str) -> P:
    """``<results>/.report-<key>``: the key of what the report shows (its targets, settings and code); beside the
    report folder, which the report replaces as a whole."""
    return _join(results, f"{REPORT_MARKER}{key}")


def report_dir(results: P) -> P:
    """``<results>/report``: the report folder."""
    return _join(results, REPORT)


def report_file(results: P, name: str) -> P:
    """``<results>/report/<name>`` (the names: rdt.report.names)."""
    return _join(report_dir(results), name)


def logs_dir(results: P) -> P:
    """``<results>/logs``."""
    return _join(results, LOGS)


def log_file(results: P, rule: str, *job: str) -> P:
    """``<results>/logs/<rule>/<job...>.log``: a workflow job's log (``job``: its parts, the last one the file)."""
    return _join(logs_dir(results), rule, *job[:-1], job[-1] + LOG_SUFFIX)


def benchmarks_dir(results: P) -> P:
    """``<results>/benchmarks``."""
    return _join(results, BENCHMARKS)


def benchmark_file(results: P, rule: str, *job: str) -> P:
    """``<results>/benchmarks/<rule>/<job...>.tsv``: a workflow job's Snakemake benchmark."""
    return _join(benchmarks_dir(results), rule, *job[:-1], job[-1] + BENCHMARK_SUFFIX)


# ----------------------------------------------------------------------------------------------- exports, evaluations
def eval_tensorboard_dir(train_folder: P, run: str) -> P:
    """``<train_folder>/tensorboard/eval-<run>``: a run's success per checkpoint and horizon, beside its training's
    curves (``tensorboard --logdir results``)."""
    return _join(train_folder, TENSORBOARD, f"eval-{run}")


def export_dir(train_folder: P, step: int | str) -> P:
    """``<train_folder>/export/step-<step>``."""
    return _join(train_folder, EXPORT, step_name(step))


def eval_dir(run_folder: P, step: int | str, horizon: int | str) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>``."""
    return _join(run_folder, EVAL, step_name(step), horizon_name(horizon))


def summary_name(key: str | None = None) -> str:
    """``summary-<key>.json`` (the workflow: the name changes with the request's identity, so a changed setting,
    checkpoint or code is a missing file, whatever Snakemake remembers), or ``summary.json``."""
    return SUMMARY if key is None else f"summary-{key}.json"


def summary_path(run_folder: P, step: int | str, horizon: int | str, key: str | None = None) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>/summary[-<key>].json``."""
    return _join(eval_dir(run_folder, step, horizon), summary_name(key))


def eval_config_path(run_folder: P, step: int | str, horizon: int | str, key: str) -> P:
    """``<run_folder>/eval/step-<step>/h<horizon>/eval-<key>.yaml``: the settings document of the evaluation request
    ``<key>`` (rdt evaluate --config; rdt.evaluation.config), written by the workflow's eval_config rule."""
    return _join(eval_dir(run_folder, step, horizon), f"eval-{key}.yaml")


def evaluations(run_folder: Path) -> list[tuple[int, int, Path]]:
    """The evaluation summaries found in a run folder, as (step, horizon, summary file), in order; where a folder
    holds several (requests of other identities), the newest."""
    found = []
    for step_dir in Path(run_folder, EVAL).glob("step-*"):
        m = STEP_DIR.match(step_dir.name)
        if not m:
            continue
        for h_dir in step_dir.glob("h*"):
            mh = HORIZON_DIR.match(h_dir.name)
            summaries = sorted(h_dir.glob(SUMMARY_GLOB), key=lambda f: f.stat().st_mtime) if mh else []
            if summaries:
                found.append((int(m.group(1)), int(mh.group(1)), summaries[-1]))
    return sorted(found)
