"""The targets of a plan: the folders under ``results/`` that the report reads, one small object per target that
answers for its kind what the plan asks of it (``Plan.target(name)``; the plan's per-target methods such as
``plan.horizons(name)`` hand the question to it):

- :class:`Run`: a run of the config (``runs.<name>``, kind train): trained here in segments, evaluated at the
  segment ends the evaluation budget (``eval.checkpoints``) chooses;
- :class:`Replay`: a run of kind replay: its demos replayed open-loop on the evaluation's init states, no model,
  one evaluation at step 0 and horizon 0 (the floor every policy is compared with; ``rdt.replay``);
- :class:`Checkpoint`: an entry of ``evaluate_checkpoints``: a checkpoint made elsewhere (a folder or a Hugging
  Face id), evaluated at its step with the base sections' evaluation settings.

A target holds its plan (``plan``), which keeps what targets share: the settings sections, the cache keys and the
trainings.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar

from rdt import layout
from rdt.errors import UserError
from rdt.plan import checks
from rdt.plan.hub import hub_snapshot, looks_like_hub_id
from rdt.plan.keys import code_fingerprint
from rdt.utils.files import read_json

#: runs.<name>.kind of a replay run; its one evaluation is step 0 at horizon 0 (open loop)
REPLAY = "replay"
REPLAY_STEP = 0
REPLAY_HORIZON = 0
EVAL_KEYS = ("suite", "tasks", "episodes_per_task", "max_steps", "weights", "seed", "videos_per_task")


class Target(ABC):
    """What every target answers: its checks, and its evaluations (which steps, horizons, episodes, settings).
    ``settings``: its sections (demos, data, train, eval), a run's with its overrides merged."""

    kind: ClassVar[str]

    def __init__(self, plan, name: str, settings: dict):
        self.plan = plan
        self.name = name
        self.settings = settings

    # ------------------------------------------------------------------------------------------------ checks
    @property
    def where(self) -> str:
        """Where its settings are in the config, for error messages."""
        return f"runs.{self.name}"

    def check_numbers(self) -> None:
        checks.check_eval_numbers(self.where, self.settings["eval"])

    def check_tasks(self) -> None:
        """The task selections of its evaluation and of the expert that makes its demos name tasks of their suite."""
        sections = [("eval", self.settings["eval"])]
        if self.settings["demos"]["source"] == "expert":
            sections.insert(0, ("demos", self.settings["demos"]))
        checks.check_tasks(self.where, sections)

    def check_files(self) -> None:
        checks.check_demos(self.plan, self.where, self.settings["demos"])

    # ------------------------------------------------------------------------------------------------ evaluation
    @abstractmethod
    def eval_steps(self) -> list[int]:
        """The evaluated checkpoints' steps."""

    def horizons(self, step: int | None = None) -> list[int]:
        """Execution horizons; with ``step``, those evaluated at that checkpoint (the budget's intermediate horizons
        at every evaluated step but the final one)."""
        e = self.settings["eval"]
        if step is not None and step != self.eval_steps()[-1] and e.get("intermediate_horizons"):
            return list(e["intermediate_horizons"])
        return list(e["exec_horizons"])

    def eval_episodes(self, step: int) -> int:
        """Episodes per task at a checkpoint: eval.episodes_per_task at the final one, the intermediate count at the
        others (when set)."""
        e = self.settings["eval"]
        if step != self.eval_steps()[-1] and e.get("intermediate_episodes_per_task"):
            return min(e["intermediate_episodes_per_task"], e["episodes_per_task"])
        return e["episodes_per_task"]

    def weights(self) -> str:
        """Which weights are evaluated (eval.weights)."""
        return self.settings["eval"]["weights"]

    def eval_settings(self, step: int | None = None) -> dict:
        """The evaluation settings the evaluate rule passes on; with ``step``, its episodes per task are that
        checkpoint's."""
        e = self.settings["eval"]
        out = {k: e[k] for k in EVAL_KEYS} | {"tasks": [str(t) for t in e["tasks"]]}
        out["weights"] = self.weights()
        if step is not None:
            out["episodes_per_task"] = self.eval_episodes(step)
        return out

    def eval_gpus(self) -> int:
        return self.settings["eval"]["gpus"]

    @abstractmethod
    def evaluated_weights(self, step: int) -> dict:
        """The identity of the weights (or, for a replay, of the demos) evaluated at ``step``."""

    def eval_identity(self, step: int, horizon: int) -> dict:
        """What decides an evaluation's results: its settings at that step and horizon, the evaluated weights and
        the evaluation code."""
        return {
            "eval": self.eval_settings(step),
            "horizon": horizon,
            "weights": self.evaluated_weights(step),
            "code": code_fingerprint("evaluate"),
        }

    def eval_config(self, step: int, horizon: int) -> dict:
        """The settings document of the evaluation of ``step`` at ``horizon`` (rdt/evaluation/config.py; the
        workflow's eval_config rule writes it, `rdt evaluate --config` reads it): the checkpoint and its inputs, the
        evaluation settings at that step (those of :meth:`eval_settings`, which the key covers) and where success
        goes as it finishes. The simulator processes are the job's threads (``--envs``)."""
        e = self.eval_settings(step)
        stats = self.eval_stats()
        return {
            "checkpoint": self.checkpoint_ref(step),
            **self.checkpoint_settings(),
            "lang": self.plan.task_language_path(self.name),
            "stats": stats[0] if stats else None,
            "suite": e["suite"],
            "tasks": e["tasks"],
            "exec_horizons": [horizon],
            "episodes_per_task": e["episodes_per_task"],
            "max_steps": e["max_steps"],
            "seed": e["seed"],
            "videos_per_task": e["videos_per_task"],
            **self.tracking(),
            "run": self.name,
        }

    def checkpoint_settings(self) -> dict:
        """The evaluation document's settings about the checkpoint: which weights (``auto``: null, EMA when there
        are any)."""
        weights = self.eval_settings()["weights"]
        return {"weights": None if weights == "auto" else weights}

    def tracking(self) -> dict:
        """Where the evaluation document sends success besides summary.json: nowhere."""
        return {}

    # ------------------------------------------------------------------------------------------------ the report
    @abstractmethod
    def document_fields(self) -> dict:
        """What its settings document (``results/<target>/settings.json``) says beyond the evaluations: its kind
        and the settings of what was evaluated."""


class Run(Target):
    """A run trained here: its training is ``plan.train_key(name)``, shared by the runs with the same settings."""

    kind = "run"

    def check_numbers(self) -> None:
        checks.check_run_numbers(self.where, self.settings, self.plan.resolved_train(self.name))

    def check_files(self) -> None:
        super().check_files()
        checks.check_init_from(self.plan, self.where, self.plan.resolved_train(self.name)["init_from"])

    def eval_steps(self) -> list[int]:
        """The evaluated checkpoints (the evaluation budget, eval.checkpoints): the final segment end always, every
        k-th segment end, the last N and the listed steps."""
        ends = self.plan.segment_steps(self.name)
        c = self.settings["eval"].get("checkpoints") or {}
        every, last, listed = c.get("every", 1), c.get("last", 0), c.get("steps", [])
        bad = sorted(set(listed) - set(ends))
        if bad:
            shown = ", ".join(map(str, ends[:6])) + (", ..." if len(ends) > 6 else "")
            raise UserError(
                f"runs.{self.name}.eval.checkpoints.steps: {bad} are not segment ends of the training "
                f"(expected steps from {shown}, {ends[-1]}: multiples of checkpointing_period and "
                "max_steps)"
            )
        chosen = {ends[-1]} | set(listed) | set(ends[len(ends) - last :] if last else [])
        if every:
            chosen |= {s for i, s in enumerate(ends, 1) if i % every == 0}
        return sorted(chosen)

    def evaluated_weights(self, step: int) -> dict:
        """The training's key (which covers its settings, data and code) and the step."""
        return {"training": self.plan.train_key(self.name), "step": step}

    def text_encoder(self) -> str:
        return self.plan.resolved_train(self.name)["text_encoder"]

    def checkpoint_ref(self, step: int) -> str:
        """The exported step of its training."""
        return self.plan.export_path(self.name, step)

    def checkpoint_input(self, step: int) -> list[str]:
        return [self.checkpoint_ref(step)]

    def eval_stats(self) -> list[str]:
        """None: the export's pipeline.json carries the statistics it was trained with."""
        return []

    def tracking(self) -> dict:
        """Success per checkpoint and horizon beside the training's curves: the training's TensorBoard folder
        (tensorboard/eval-<run>), and W&B when the training reports to it (train.report_to: wandb)."""
        wandb = self.plan.resolved_train(self.name)["report_to"] == "wandb"
        return {
            "tensorboard": layout.eval_tensorboard_dir(self.plan.train_dir(self.name), self.name),
            "report_to": "wandb" if wandb else "none",
        }

    def document_fields(self) -> dict:
        plan, s = self.plan, self.settings
        train, folder = plan.train_settings(self.name), plan.run_dir(self.name)
        return {
            "kind": self.kind,
            "demos": plan.demos_used(self.name),
            "demos_per_task": s["data"]["demos_per_task"],
            "gpus": s["train"]["gpus"],
            # its RUN.yaml, the data, language and statistics files relative to the target's folder (as the other
            # paths of the document are, so that it does not change when the results folder moves)
            "train": {**train, **{k: os.path.relpath(train[k], folder) for k in ("data", "lang", "stats")}},
            "train_folder": os.path.relpath(plan.train_dir(self.name), folder),
            "train_code": plan.train_identity(self.name)["code"],
            "max_steps": s["train"]["max_steps"],
            "workflow": s,
        }


class Replay(Target):
    """A replay run: no model and no training; its demos are replayed open-loop (``rdt replay``)."""

    kind = REPLAY

    def check_files(self) -> None:
        super().check_files()
        checks.check_replay_demos(self.where, self.settings["demos"])

    def eval_steps(self) -> list[int]:
        return [REPLAY_STEP]

    def horizons(self, step: int | None = None) -> list[int]:
        return [REPLAY_HORIZON]

    def eval_gpus(self) -> int:
        return 0

    def replay_settings(self) -> dict:
        """What the replay rule passes on: the demos (their folder), which of them, and the evaluation pairs."""
        return {
            "demos": self.plan.demos_input(self.plan.demos_used(self.name)),
            "demos_per_task": self.settings["data"]["demos_per_task"],
            **self.eval_settings(),
        }

    def evaluated_weights(self, step: int) -> dict:
        """No weights: the replayed demos and how many of them."""
        return {
            "demos": self.plan.demos_used(self.name),
            "demos_per_task": self.settings["data"]["demos_per_task"],
        }

    def eval_identity(self, step: int, horizon: int) -> dict:
        """The evaluation settings, the replayed demos (and how many of them) and the replay code."""
        return {
            "eval": self.eval_settings(),
            "replay": self.evaluated_weights(step),
            "code": code_fingerprint("replay"),
        }

    def document_fields(self) -> dict:
        return {
            "kind": self.kind,
            "code": {"replay": code_fingerprint("replay")},
            **self.evaluated_weights(REPLAY_STEP),
            "workflow": self.settings,
        }


class Checkpoint(Target):
    """An evaluation-only checkpoint: ``entry`` is its item of evaluate_checkpoints (path, step, stats, encoders,
    control frequency, weights); its evaluation settings are the base sections'."""

    kind = "checkpoint"

    def __init__(self, plan, entry: dict):
        super().__init__(plan, entry["name"], plan.base)
        self.entry = entry

    @property
    def where(self) -> str:
        return "eval"

    def check_numbers(self) -> None:
        checks.check_eval_numbers("config", self.settings["eval"])

    def check_tasks(self) -> None:
        checks.check_tasks("", [("eval", self.settings["eval"])])  # the config's own eval section: eval.tasks

    def check_files(self) -> None:
        checks.check_checkpoint(self.plan, self.name, self.entry)

    def eval_steps(self) -> list[int]:
        return [self.entry["step"]]

    def weights(self) -> str:
        """Its entry's weights (``auto``: EMA if the folder has them)."""
        return self.entry.get("weights", "auto")

    def evaluated_weights(self, step: int) -> dict:
        """The entry and the identities of its files, so a checkpoint replaced in place is evaluated again."""
        return {"checkpoint": self.entry, "files": self.files()}

    def files(self) -> dict[str, str | None]:
        """Identities of the checkpoint's files (size and first/last MiB of the weights); a hub id's are those of
        its cached snapshot (none when it is not cached: the id stands for itself)."""
        from rdt.utils.hashing import file_identity

        path = self.entry["path"]
        folder = self.plan.local_path(path)
        if not folder.exists() and looks_like_hub_id(path):
            folder = hub_snapshot(path) or folder
        names = layout.CHECKPOINT_FILES
        return {n: file_identity(folder / n) for n in names if (folder / n).is_file()}

    def text_encoder(self) -> str:
        """Configured, else its pipeline.json's."""
        if self.entry.get("text_encoder"):
            return self.entry["text_encoder"]
        pipeline = self.plan.local_path(self.entry["path"]) / layout.PIPELINE_FILE
        try:
            return read_json(pipeline)["text_encoder"]
        except (UserError, KeyError, TypeError):
            raise UserError(
                f"evaluate_checkpoints.{self.name}: {pipeline} does not name the text encoder; set "
                "text_encoder for this entry"
            ) from None

    def checkpoint_ref(self, step: int) -> str:
        """Its folder or Hugging Face id."""
        return self.entry["path"]

    def checkpoint_input(self, step: int) -> list[str]:
        """A local folder (or anything that is not a hub id); none for a hub id: it is not a path, and `rdt evaluate`
        loads it from the local Hugging Face cache."""
        ref = self.checkpoint_ref(step)
        if self.plan.local_path(ref).exists() or not looks_like_hub_id(ref):
            return [ref]
        return []

    def checkpoint_settings(self) -> dict:
        """Which weights, and for a folder without pipeline.json (a released checkpoint) the entry's encoders and
        control frequency."""
        c = self.entry
        return {
            **super().checkpoint_settings(),
            "text_encoder": c.get("text_encoder") or None,
            "vision_encoder": c.get("vision_encoder") or None,
            "control_frequency": c.get("control_frequency") or None,
        }

    def eval_stats(self) -> list[str]:
        """The configured statistics file (its training data's), if any."""
        stats = self.entry.get("stats")
        return [stats] if stats else []

    def document_fields(self) -> dict:
        return {"kind": self.kind, "checkpoint": self.entry}
