"""The :class:`Plan`: everything the workflow derives from its configuration, by target name.

It holds what targets share (the validated config, the base and per-run settings sections, the content keys of the
shared stages, the trainings and their segments) and hands each per-target question to the target's object
(:mod:`rdt.plan.targets`): a run, a replay run or an evaluation-only checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from rdt import layout, train_config
from rdt.errors import UserError
from rdt.plan import cost, demos, documents
from rdt.plan.checks import check_target_names
from rdt.plan.config import SECTIONS, deep_merge, validate
from rdt.plan.hub import in_hub_cache, looks_like_hub_id
from rdt.plan.keys import code_fingerprint, key_of, stage_code
from rdt.plan.targets import REPLAY, Checkpoint, Replay, Run, Target

#: train keys that belong to the workflow, not to RUN.yaml
WORKFLOW_TRAIN_KEYS = ("gpus", "max_steps")


class Plan:
    """Everything the workflow derives from its configuration. ``base_dir``: where relative paths of the config
    (demo folders, checkpoints, statistics) are taken from (the working directory of Snakemake). ``await_demos``:
    called with the key of a generation of expert demos whose content decides the keys after it, before it exists
    (rdt.plan.demos; the workflow passes its checkpoint); without it, the plan predicts that generation's own."""

    def __init__(
        self,
        config: dict,
        base_dir: str | os.PathLike = ".",
        check_files: bool = True,
        await_demos: Callable[[str], None] | None = None,
    ):
        self.config = validate(config)
        self.base_dir = Path(base_dir)
        self.results = self.config["results"]
        self._await_demos = await_demos or (lambda key: None)
        self._demos_used: dict[str, dict] = {}
        check_target_names(list(self.config["runs"]), [c["name"] for c in self.config["evaluate_checkpoints"]])
        entries = self.config["runs"].items()
        #: the settings sections of trained runs, and of replay runs (kind: replay): open-loop replay of the run's
        #: demos, no training (rdt.replay)
        self.runs = {n: self._run_settings(n, o) for n, o in entries if o.get("kind", "train") == "train"}
        self.replays = {n: self._run_settings(n, o) for n, o in entries if o.get("kind") == REPLAY}
        self.base = self._run_settings(None, {})
        #: the entries of evaluate_checkpoints by name
        self.checkpoints = {c["name"]: c for c in self.config["evaluate_checkpoints"]}
        self._targets: dict[str, Target] = {
            **{n: Run(self, n, s) for n, s in self.runs.items()},
            **{n: Replay(self, n, s) for n, s in self.replays.items()},
            **{n: Checkpoint(self, c) for n, c in self.checkpoints.items()},
        }
        for t in self._targets.values():
            t.check_numbers()  # valid, and they fit
        # every task selection names tasks of its suite, checked here, at parse time: found later inside a rule's
        # input function it would reach the user wrapped in Snakemake's InputFunctionException and a traceback
        for t in self._targets.values():
            t.check_tasks()
        if not self._targets:
            raise UserError(
                "config: runs is empty and evaluate_checkpoints has no entry, so there is nothing to "
                "train, evaluate or report; add a run (e.g. runs: {default: {}}) or a checkpoint to "
                "evaluate"
            )
        if check_files:
            self.check_files()

    # ------------------------------------------------------------------------------------------------ targets
    @property
    def targets(self) -> list[str]:
        """Runs, replay runs and evaluation-only checkpoints, in this order."""
        return list(self._targets)

    def target(self, name: str) -> Target:
        """The object of a target (:class:`Run`, :class:`Replay` or :class:`Checkpoint`)."""
        return self._targets[name]

    def kind(self, target: str) -> str:
        """run (trained here), replay (open-loop replay of a run's demos) or checkpoint (evaluation only)."""
        return self._targets[target].kind

    # ------------------------------------------------------------------------------------------------ settings
    def _run_settings(self, name: str | None, override: dict) -> dict:
        merged = {s: deep_merge(self.config[s], override.get(s, {})) for s in SECTIONS}
        where = "config" if name is None else f"runs.{name}"
        merged = {s: v for s, v in validate({**merged, "results": self.results}, where).items() if s in SECTIONS}
        e = merged["eval"]
        e["suite"] = e["suite"] or merged["demos"]["suite"]
        e["tasks"] = e["tasks"] or merged["demos"]["tasks"]
        return merged

    def settings(self, target: str) -> dict:
        """Sections of a run or replay run, or the base sections for an evaluation-only checkpoint."""
        return self.runs.get(target) or self.replays.get(target) or self.base

    def local_path(self, p: str) -> Path:
        """A path of the config (``~`` expanded; a relative one from ``base_dir``)."""
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() else self.base_dir / path

    def checkpoint_exists(self, name: str) -> bool:
        """A checkpoint named in the config: a local path, or a Hugging Face id in the local cache."""
        return self.local_path(name).exists() or (looks_like_hub_id(str(name)) and in_hub_cache(str(name)))

    def check_files(self) -> None:
        """Files and folders named in the config exist (checked at parse time, whatever is in results/)."""
        for t in self._targets.values():
            t.check_files()

    # ------------------------------------------------------------------------------------------------ shared stages
    def demo_settings(self, run: str) -> dict:
        d = self.settings(run)["demos"]
        if d["source"] in ("folder", "lerobot"):
            return {"source": d["source"], "folder": str(self.local_path(d["folder"]).resolve())}
        noise = {"action_noise": d["action_noise"]} if d.get("action_noise") else {}  # in the key only when set
        return {
            "code": code_fingerprint("expert"),
            "source": "expert",
            "suite": d["suite"],
            "tasks": [str(t) for t in d["tasks"]],
            "episodes_per_task": d["episodes_per_task"],
            "max_attempts": d["max_attempts"],
            "seed": d["seed"],
            "first_init_state": d["first_init_state"],
            **noise,
        }

    def demos_used(self, run: str) -> dict:
        """The settings of the demos a run's data (or replay) is made from: :meth:`demo_settings`, except that for
        expert demos the code is that of the earliest generation with the current code's content, so an expert-code
        edit that regenerates identical demos reruns nothing made from them (rdt/plan/demos.py)."""
        settings = self.demo_settings(run)
        if settings["source"] != "expert":
            return settings
        key = key_of(settings)
        if key not in self._demos_used:  # decided once (the result of a wait that raises is not kept)
            root = layout.cache_dir(self.local_path(self.results), layout.DEMOS)
            self._demos_used[key] = demos.settings_used(root, settings, self._await_demos)
        return self._demos_used[key]

    def data_settings(self, run: str) -> dict:
        d, s = self.runs[run]["demos"], self.runs[run]["data"]
        return {
            "code": stage_code("convert", "stats"),
            "demos": self.demos_used(run),
            "suite": d["suite"],
            "tasks": [str(t) for t in d["tasks"]],
            "demos_per_task": s["demos_per_task"],
            "min_steps": s["min_steps"],
            # issue 13's settings enter the key only when set, so existing data keys stay as they were
            **({"drop_noops": True} if s.get("drop_noops") else {}),
            **({"image_size": s["image_size"]} if s.get("image_size") else {}),
        }

    def language_settings(self, run: str) -> dict:
        """Training language: the instructions of the training data, and the text encoder; nothing else."""
        return {
            "code": code_fingerprint("encode"),
            "data": key_of(self.data_settings(run)),
            "text_encoder": self.resolved_train(run)["text_encoder"],
        }

    def demos_input(self, settings: dict) -> str:
        """What `convert` reads: the expert's output folder (of :meth:`demos_used`), or the configured folder of
        demo files."""
        if settings["source"] in ("folder", "lerobot"):
            return settings["folder"]
        return layout.demos_dir(self.results, key_of(settings))

    def data_path(self, run: str) -> str:
        return layout.data_file(self.results, key_of(self.data_settings(run)))

    def stats_path(self, run: str) -> str:
        return layout.stats_file(self.results, key_of(self.data_settings(run)))

    def language_path(self, run: str) -> str:
        return layout.language_file(self.results, key_of(self.language_settings(run)))

    @cached_property
    def demos(self) -> dict[str, dict]:
        """The generations of expert demos the current code makes, by key: every one is generated (those in use
        and those whose content decides which earlier one is used)."""
        return {
            key_of(self.demo_settings(r)): self.demo_settings(r)
            for r in [*self.runs, *self.replays]
            if self.demo_settings(r)["source"] == "expert"
        }

    def demo_generation(self, key: str) -> dict:
        """The settings of a generation of expert demos by its key: one the current code makes (:attr:`demos`), or
        an earlier one whose identical demos a run's data keeps using (:meth:`demos_used`; its folder exists)."""
        if key in self.demos:
            return self.demos[key]
        for run in [*self.runs, *self.replays]:
            if key_of(self.demos_used(run)) == key:
                return self.demos_used(run)
        raise UserError(f"{layout.demos_dir(self.results, key)}: not a generation of expert demos this config uses")

    @cached_property
    def data(self) -> dict[str, dict]:
        return {key_of(self.data_settings(r)): self.data_settings(r) for r in self.runs}

    @cached_property
    def language(self) -> dict[str, dict]:
        return {key_of(self.language_settings(r)): self.language_settings(r) for r in self.runs}

    # ------------------------------------------------------------------------------------------------ training
    def resolved_train(self, run: str) -> dict:
        """Every key of rdt/train_config.py for a run (its defaults for keys not configured), validated there."""
        given = {k: v for k, v in self.runs[run]["train"].items() if k not in WORKFLOW_TRAIN_KEYS}
        given.update(data="unset", lang="unset", stats="unset")
        try:
            cfg = train_config.from_dict(given, source=f"config runs.{run}.train").to_dict()
        except UserError as e:
            raise UserError(str(e)) from None
        for k in ("data", "lang", "stats", "run"):
            cfg.pop(k)
        return cfg

    def train_key(self, run: str) -> str:
        """Key of a training: its RUN.yaml settings that decide the weights (not the bookkeeping keys such as
        checkpointing_period or log_period, which the trainer's identity leaves out too) and the keys of its data and
        language (no evaluation setting, no run name), so runs that differ only in evaluation or bookkeeping share
        one training folder and its checkpoints."""
        weights = {k: v for k, v in self.resolved_train(run).items() if k not in train_config.NOT_IN_FINGERPRINT}
        code = weights["code_fingerprint"] or train_config.code_fingerprint()  # the pin, else the training code
        return key_of(
            {
                "train": weights,
                "code": code,
                "data": key_of(self.data_settings(run)),
                "lang": key_of(self.language_settings(run)),
            }
        )

    def train_dir(self, run: str) -> str:
        return layout.train_dir(self.results, self.train_key(run))

    def train_settings(self, run: str) -> dict:
        """RUN.yaml of a run's training: the resolved settings with the workflow's data, language and statistics
        paths; ``run`` is the training's key (the folder name)."""
        return {
            **self.resolved_train(run),
            "data": self.data_path(run),
            "lang": self.language_path(run),
            "stats": self.stats_path(run),
            "run": self.train_key(run),
        }

    def run_marker(self, key: str) -> str:
        """``results/train/<key>/.run-<marker>``, the key of the training's RUN.yaml (:meth:`train_settings`): an input
        of the run_config rule, so a changed run.yaml (a bookkeeping key, or the paths of a moved results folder) is
        written again, with or without Snakemake's .snakemake/ metadata."""
        return layout.run_marker(layout.train_dir(self.results, key), key_of(self.train_settings(self.trainings[key])))

    def train_identity(self, run: str) -> dict:
        """What decides a training's weights, as Snakemake's params carry it: the settings without the
        bookkeeping keys (the data, language and statistics files by their cache keys; their contents are
        Snakemake inputs) and the training code fingerprint (or its pin, train.code_fingerprint)."""
        cfg = self.train_settings(run)
        settings = {k: v for k, v in cfg.items() if k not in train_config.NOT_IN_FINGERPRINT}
        return {"settings": settings, "code": settings.pop("code_fingerprint") or train_config.code_fingerprint()}

    @cached_property
    def trainings(self) -> dict[str, str]:
        """Training key -> the first run that uses it (they all share its settings)."""
        out: dict[str, str] = {}
        for run in self.runs:
            out.setdefault(self.train_key(run), run)
        return out

    def train_gpus(self, key: str) -> int:
        return max(self.runs[r]["train"]["gpus"] for r in self.runs if self.train_key(r) == key)

    def segment_steps(self, run: str) -> list[int]:
        """Steps at which the run's training stops, exports a checkpoint and hands over to the next segment."""
        period, last = self.resolved_train(run)["checkpointing_period"], self.runs[run]["train"]["max_steps"]
        steps = list(range(period, last + 1, period))
        if not steps or steps[-1] != last:
            steps.append(last)
        return steps

    def previous_step(self, key: str, step: int) -> int | None:
        """The segment end that segment ``step`` of training ``key`` resumes from: the last checkpointing period
        before it (None: the first segment starts from the initial weights)."""
        period = self.resolved_train(self.trainings[key])["checkpointing_period"]
        if step < 1:
            raise UserError(f"training {key}: step {step} is not a positive optimizer step")
        prev = ((step - 1) // period) * period
        return prev or None

    def export_path(self, run_or_key: str, step: int) -> str:
        key = run_or_key if run_or_key in self.trainings else self.train_key(run_or_key)
        return layout.export_dir(layout.train_dir(self.results, key), step)

    def previous_export(self, key: str, step: int) -> list[str]:
        prev = self.previous_step(key, step)
        return [] if prev is None else [self.export_path(key, prev)]

    # ------------------------------------------------------------------------------------------------ evaluation
    # what each kind of target answers is in rdt/plan/targets.py; these ask the target by name
    def replay_settings(self, target: str) -> dict:
        """What the replay rule passes on: the demos (their folder), which of them, and the evaluation pairs."""
        return self._targets[target].replay_settings()

    def eval_settings(self, target: str, step: int | None = None) -> dict:
        """The evaluation settings the evaluate rule passes on; with ``step``, its episodes per task are that
        checkpoint's (the budget's intermediate count for every evaluated step but the final one)."""
        return self._targets[target].eval_settings(step)

    def eval_gpus(self, target: str) -> int:
        return self._targets[target].eval_gpus()

    def horizons(self, target: str, step: int | None = None) -> list[int]:
        """Execution horizons of a target; with ``step``, those evaluated at that checkpoint (the budget's
        intermediate horizons at every evaluated step but the final one)."""
        return self._targets[target].horizons(step)

    def eval_steps(self, target: str) -> list[int]:
        """The evaluated checkpoints (the evaluation budget, eval.checkpoints): the final segment end always, every
        k-th segment end, the last N and the listed steps; an evaluation-only checkpoint: its step; a replay: 0."""
        return self._targets[target].eval_steps()

    def eval_episodes(self, target: str, step: int) -> int:
        """Episodes per task at a checkpoint: eval.episodes_per_task at the final one, the intermediate count at the
        others (when set)."""
        return self._targets[target].eval_episodes(step)

    def eval_identity(self, target: str, step: int, horizon: int) -> dict:
        """What decides an evaluation's results: its settings at that step and horizon, the evaluated weights
        (a run's training key, which covers its settings, data and code; the files of a checkpoint made elsewhere;
        a replay's demos) and the evaluation code."""
        return self._targets[target].eval_identity(step, horizon)

    def eval_key(self, target: str, step: int, horizon: int) -> str:
        return key_of(self.eval_identity(target, step, horizon))

    def summary_path(self, target: str, step: int, horizon: int) -> str:
        """The evaluation's summary, named by its identity (summary-<key>.json): a changed setting, checkpoint or
        code is a missing file, so it runs again whether or not Snakemake's .snakemake/ survived."""
        return layout.summary_path(self.run_dir(target), step, horizon, self.eval_key(target, step, horizon))

    def summaries(self, target: str) -> list[str]:
        return [self.summary_path(target, s, h) for s in self.eval_steps(target) for h in self.horizons(target, s)]

    def all_summaries(self) -> list[str]:
        return [s for t in self.targets for s in self.summaries(t)]

    def text_encoder(self, target: str) -> str:
        """Text encoder of a run's training, or of an evaluation-only checkpoint (configured, else its
        pipeline.json)."""
        return self._targets[target].text_encoder()

    def task_language_settings(self, target: str) -> dict:
        """The language table of an evaluation: (suite, tasks, text encoder)."""
        e = self.eval_settings(target)
        return {
            "code": code_fingerprint("encode"),
            "suite": e["suite"],
            "tasks": e["tasks"],
            "text_encoder": self.text_encoder(target),
        }

    def task_language_path(self, target: str) -> str:
        return layout.task_language_file(self.results, key_of(self.task_language_settings(target)))

    @cached_property
    def task_language(self) -> dict[str, dict]:
        evaluated = [n for n, t in self._targets.items() if not isinstance(t, Replay)]  # a replay has no instruction
        return {key_of(self.task_language_settings(t)): self.task_language_settings(t) for t in evaluated}

    def checkpoint_ref(self, target: str, step: int) -> str:
        """What `rdt evaluate --checkpoint` is given: a run's exported step, or an evaluation-only checkpoint's
        folder or Hugging Face id."""
        return self._targets[target].checkpoint_ref(step)

    def checkpoint_input(self, target: str, step: int) -> list[str]:
        """The evaluation's checkpoint as a file input: a run's export or a local folder; none for a hub id (it is
        not a path; `rdt evaluate` loads it from the local Hugging Face cache)."""
        return self._targets[target].checkpoint_input(step)

    def eval_config(self, target: str, step: int, horizon: int) -> dict:
        """The settings document of one evaluation (rdt/evaluation/config.py), which the workflow's eval_config
        rule writes beside its summary and the evaluate rule runs with `rdt evaluate --config`: the checkpoint
        (which weights: a run's eval.weights, a checkpoint made elsewhere its entry's, ``auto`` = null: EMA when the
        folder has them; for a folder without pipeline.json the entry's vision encoder and control frequency), its
        language table and statistics, the settings of :meth:`eval_settings` at that step and horizon, and where
        success goes as it finishes (a run: its training's TensorBoard folder, and W&B with train.report_to:
        wandb)."""
        return self._targets[target].eval_config(step, horizon)

    def eval_stats(self, target: str) -> list[str]:
        """The statistics file given to an evaluation: none for a run (its export's pipeline.json carries the
        statistics it was trained with), the configured file for a checkpoint made elsewhere."""
        return self._targets[target].eval_stats()

    # ------------------------------------------------------------------------------------------------ the report
    def settings_document(self, target: str) -> dict:
        """``results/<target>/settings.json``: what the report audits and records as provenance."""
        return documents.settings_document(self, target)

    def run_dir(self, target: str) -> str:
        """``results/<target>``: the folder of a target's evaluations and settings document (rdt.layout)."""
        return layout.run_dir(self.results, target)

    def settings_path(self, target: str) -> str:
        """``results/<target>/settings.json``."""
        return layout.settings_file(self.run_dir(target))

    def settings_marker(self, target: str) -> str:
        """``results/<target>/.settings-<key>``, the key of its settings document: an input of the target_settings
        rule, so a changed document (a setting changed, or changed back) is a missing file, with or without
        Snakemake's .snakemake/ metadata. The document names its files relative to the target's folder, so moving
        the results folder keeps the key."""
        return layout.settings_marker(self.run_dir(target), key_of(self.settings_document(target)))

    def report_folders(self) -> list[str]:
        return [self.run_dir(t) for t in self.targets]

    def report_identity(self) -> dict:
        """What decides the report beyond the documents and summaries it reads: its targets, in order, its
        settings and the report code."""
        return {"targets": self.targets, "report": self.config["report"], "code": code_fingerprint("report")}

    def report_marker(self) -> str:
        """``results/.report-<key>``, the key of :meth:`report_identity`: an input of the report rule."""
        return layout.report_marker(self.results, key_of(self.report_identity()))

    def eval_cost(self, target: str) -> dict:
        """What a target's evaluations cost, before anything runs (rdt/plan/cost.py): per horizon the jobs,
        episodes, upper bounds of simulator steps and policy calls, and hours; with the training's samples for a
        run."""
        return cost.eval_cost(self, target)
