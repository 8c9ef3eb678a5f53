"""The experiment plan: what the workflow runs for a configuration, importable and tested without Snakemake.

``Plan(config)`` takes the workflow configuration (``config/config.yaml`` with any ``--config`` overrides; numbers
given on the command line arrive as strings and are converted by the schema's types), fills in the schema's
defaults, validates it, and answers every question the rules ask:

- the runs' effective settings (the base sections with each run's overrides);
- the content keys of the shared stages (demos, training data, training language, per-task evaluation language,
  training) and their paths under ``results/cache`` and ``results/train``;
- a training's identity: its settings (minus the bookkeeping keys that do not change the weights) and the
  fingerprint of the code that determines its weights (``rdt.train_config.code_fingerprint``), the same identity
  the trainer checks before resuming and records in each export's ``pipeline.json``;
- the segment schedule (which export each segment resumes from), the evaluation targets and their inputs;
- the settings document (``results/<target>/settings.json``) that the report reads with :func:`read_settings`.

Evaluation never feeds training: a training depends on the demos, data, training language (training data + text
encoder) and train settings only, so runs that differ only in ``eval`` share one training (``results/train/<key>``).
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from rdt import fingerprint, layout, train_config
from rdt.errors import UserError
from rdt.utils.atomic import write_text
from rdt.utils.files import read_json
from rdt.utils.hashing import settings_key

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
SECTIONS = ("demos", "data", "train", "eval")
#: folder names under ``results`` that are not targets
RESERVED_NAMES = ("cache", "logs", "benchmarks", "report", "train")
#: train keys that belong to the workflow, not to RUN.yaml
WORKFLOW_TRAIN_KEYS = ("gpus", "max_steps")
#: the entry module of each stage; a stage's code fingerprint covers it and every rdt module it imports
STAGE_MODULES = {
    "expert": "rdt.libero.expert",
    "convert": "rdt.libero.convert",
    "stats": "rdt.data.stats",
    "encode": "rdt.encode",
    "train": "rdt.training.command",
    "evaluate": "rdt.evaluation.command",
    "report": "rdt.report.command",
    "replay": "rdt.replay",
}
#: runs.<name>.kind of a replay run; its one evaluation is step 0 at horizon 0 (open loop)
REPLAY = "replay"
REPLAY_STEP = 0
REPLAY_HORIZON = 0
EVAL_KEYS = ("suite", "tasks", "episodes_per_task", "max_steps", "weights", "seed", "videos_per_task")
SETTINGS_FORMAT = "rdt-settings/1"
SETTINGS_FILE = "settings.json"


def key_of(settings: Any) -> str:
    """Short content key of the settings that determine a shared output."""
    return settings_key(settings, length=12)


@cache
def code_fingerprint(stage: str) -> str:
    return fingerprint.fingerprint(STAGE_MODULES[stage])


def stage_code(*stages: str) -> str:
    """One fingerprint of the code of several stages (e.g. convert and stats, whose outputs share a folder)."""
    return fingerprint.fingerprint(*(STAGE_MODULES[s] for s in stages))


# ============================================================================================ config + schema
@lru_cache(maxsize=1)
def load_schema(path: str = str(SCHEMA_PATH)) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _from_string(text: str, types: list[str]) -> Any:
    """A --config string as the schema's scalar type (the first that parses), else unchanged."""
    low = text.strip().lower()
    if "null" in types and low in ("null", "none", "~", ""):
        return None
    if "boolean" in types and low in ("true", "false"):
        return low == "true"
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return text


def coerce(value: Any, schema: dict, root: dict) -> Any:
    """``value`` with strings converted to the numbers, booleans and nulls the schema expects.

    ``snakemake --config 'train={max_steps: 90}'`` parses the mapping with YAML's BaseLoader, so every scalar in
    it is a string; the schema says which should be numbers. Strings the schema wants as strings stay strings."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[1:]
        target = root
        for part in ref:
            target = target[part]
        schema = target
    types = _types(schema)
    if isinstance(value, str) and not ("string" in types and len(types) == 1):
        if "string" in types:  # e.g. [string, "null"]: only the null spelling converts
            return None if value.strip().lower() in ("null", "none", "~") and "null" in types else value
        return _from_string(value, types)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
            out[k] = coerce(v, sub, root) if sub is not None else v
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"], root) for v in value]
    return value


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, sub)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)


def validate(config: dict, where: str = "config", schema: dict | None = None) -> dict:
    """A copy of ``config`` with command-line strings converted, the schema's defaults filled in, and validated;
    a violation is a UserError naming the key, the value and the expected form."""
    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(config).__name__}")
    out = coerce(copy.deepcopy(config), schema, schema)
    errors = sorted(_validator(schema).iter_errors(out), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for e in errors[:10]:
            key = ".".join(map(str, e.absolute_path)) or "(top level)"
            lines.append(f"  {key}: {e.message}")
        hint = (
            "\nOn the command line give numbers unquoted, e.g. snakemake --config 'train={max_steps: 90}' "
            "or 'eval={exec_horizons: [8, 16]}'; every key is described in config/README.md."
        )
        raise UserError(f"{where} does not fit workflow/schemas/config.schema.yaml:\n" + "\n".join(lines) + hint)
    return out


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` applied recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_target_names(runs: list[str], checkpoints: list[str]) -> None:
    """Run and evaluation-only checkpoint names become folders under ``results``: reserved names, duplicates and
    names used by both are errors."""
    for kind, names in (("runs", runs), ("evaluate_checkpoints", checkpoints)):
        bad = sorted(set(names) & set(RESERVED_NAMES))
        if bad:
            raise UserError(
                f"{kind}: name(s) {bad} are reserved for folders of results/ "
                f"({', '.join(RESERVED_NAMES)}); choose other names"
            )
    dup = sorted({n for n in checkpoints if checkpoints.count(n) > 1})
    if dup:
        raise UserError(f"evaluate_checkpoints: name(s) {dup} appear more than once; each entry needs its own name")
    clash = sorted(set(runs) & set(checkpoints))
    if clash:
        raise UserError(f"evaluate_checkpoints: name(s) {clash} are also names of runs; use distinct names")


def check_run_numbers(where: str, settings: dict, train: dict) -> None:
    """Parse-time checks of a run's numbers that would otherwise fail only after earlier stages ran: the effective
    batch divides over per-device batch x processes (the training job starts ``max(gpus, 1)``), the expert's
    attempts fit the init states from ``first_init_state`` on, and the evaluation's episodes fit the init states.
    ``settings``: the run's merged sections; ``train``: its resolved RUN.yaml settings."""
    from rdt.libero.suites import INIT_STATES_PER_TASK

    processes = max(int(settings["train"].get("gpus") or 0), 1)
    effective, per_device = train["effective_batch_size"], train["per_device_batch_size"]
    if effective % (per_device * processes):
        raise UserError(
            f"{where}.train: effective_batch_size={effective} is not divisible by per_device_batch_size="
            f"{per_device} x {processes} process(es) (train.gpus={settings['train'].get('gpus')}) = "
            f"{per_device * processes}; choose an effective batch that is a multiple of their product"
        )
    d = settings["demos"]
    if d.get("source") == "expert":
        episodes, first = d["episodes_per_task"], d.get("first_init_state", 0)
        attempts = d.get("max_attempts") or episodes
        if not episodes <= attempts <= INIT_STATES_PER_TASK - first:
            raise UserError(
                f"{where}.demos: {episodes} demos per task with max_attempts={attempts} from init state "
                f"{first} on do not fit the {INIT_STATES_PER_TASK} init states of a task (expected "
                f"episodes_per_task <= max_attempts <= {INIT_STATES_PER_TASK - first})"
            )
    check_eval_numbers(where, settings["eval"])


def check_eval_numbers(where: str, e: dict) -> None:
    from rdt.libero.suites import INIT_STATES_PER_TASK

    if not 1 <= e["episodes_per_task"] <= INIT_STATES_PER_TASK:
        raise UserError(
            f"{where}.eval: episodes_per_task={e['episodes_per_task']}; each task has "
            f"{INIT_STATES_PER_TASK} init states and episode i uses init state i, so 1.."
            f"{INIT_STATES_PER_TASK} episodes are possible"
        )


# ============================================================================================ the plan
class Plan:
    """Everything the workflow derives from its configuration. ``base_dir``: where relative paths of the config
    (demo folders, checkpoints, statistics) are taken from (the working directory of Snakemake)."""

    def __init__(self, config: dict, base_dir: str | os.PathLike = ".", check_files: bool = True):
        self.config = validate(config)
        self.base_dir = Path(base_dir)
        self.results = self.config["results"]
        check_target_names(list(self.config["runs"]), [c["name"] for c in self.config["evaluate_checkpoints"]])
        entries = self.config["runs"].items()
        #: trained runs, and replay runs (kind: replay): open-loop replay of the run's demos, no training (rdt.replay)
        self.runs = {n: self._run_settings(n, o) for n, o in entries if o.get("kind", "train") == "train"}
        self.replays = {n: self._run_settings(n, o) for n, o in entries if o.get("kind") == REPLAY}
        self.base = self._run_settings(None, {})
        self.checkpoints = {c["name"]: c for c in self.config["evaluate_checkpoints"]}
        for run in self.runs:
            check_run_numbers(f"runs.{run}", self.runs[run], self.resolved_train(run))  # valid, and they fit
        for name in self.replays:
            check_eval_numbers(f"runs.{name}", self.replays[name]["eval"])
        if self.checkpoints:
            check_eval_numbers("config", self.base["eval"])
        self._check_tasks()
        if not self.runs and not self.replays and not self.checkpoints:
            raise UserError(
                "config: runs is empty and evaluate_checkpoints has no entry, so there is nothing to "
                "train, evaluate or report; add a run (e.g. runs: {default: {}}) or a checkpoint to "
                "evaluate"
            )
        if check_files:
            self.check_files()

    def _check_tasks(self) -> None:
        """Every task selection names tasks of its suite, checked here, at parse time: found later inside a rule's
        input function it would reach the user wrapped in Snakemake's InputFunctionException and a traceback."""
        from rdt.libero import suites

        for target in self.targets:
            s = self.settings(target)
            where = f"runs.{target}" if target in self.runs or target in self.replays else "eval"
            sections = [("eval", s["eval"])]
            if target in self.runs or target in self.replays:
                if s["demos"]["source"] == "expert":
                    sections.insert(0, ("demos", s["demos"]))
            for section, values in sections:
                try:
                    suites.select_tasks(values["suite"], [str(t) for t in values["tasks"]])
                except UserError as e:
                    raise UserError(f"{where}.{section}.tasks: {e}") from None

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

    def _path(self, p: str) -> Path:
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() else self.base_dir / path

    def _exists(self, name: str) -> bool:
        """A checkpoint named in the config: a local path, or a Hugging Face id in the local cache."""
        return self._path(name).exists() or (_looks_like_hub_id(str(name)) and _in_hub_cache(str(name)))

    def check_files(self) -> None:
        """Files and folders named in the config exist (checked at parse time, whatever is in results/)."""
        for run, s in {**self.runs, **self.replays}.items():
            d = s["demos"]
            if d["source"] in ("folder", "lerobot"):
                if not d["folder"]:
                    raise UserError(
                        f"runs.{run}: demos.source is {d['source']!r} but demos.folder is not set "
                        "(expected a folder of LIBERO *_demo.hdf5 files, or a LeRobot dataset folder)"
                    )
                if not self._path(d["folder"]).is_dir():
                    raise UserError(
                        f"runs.{run}: demos.folder {d['folder']!r} does not exist (expected a folder of "
                        f"LIBERO *_demo.hdf5 files, relative to {self.base_dir.resolve()})"
                    )
                if d["source"] == "folder":
                    from rdt.libero.convert import find_demo_files, select_sources

                    try:  # every selected task has its file (a partial download is found here, not after training)
                        select_sources(find_demo_files([str(self._path(d["folder"]))]), d["suite"], d["tasks"])
                    except UserError as e:
                        raise UserError(f"runs.{run}: demos.folder {d['folder']!r}: {e}") from None
            if run in self.replays:
                if d["source"] == "lerobot":
                    raise UserError(
                        f"runs.{run}: kind replay replays LIBERO demo files (their simulator states and actions); "
                        "demos.source lerobot has no simulator states: use source expert or folder"
                    )
                continue
            init = self.resolved_train(run)["init_from"]
            if init and not self._exists(init):
                raise UserError(
                    f"runs.{run}: train.init_from {init!r} is neither a local checkpoint folder nor in "
                    "the local Hugging Face cache (expected a folder with config.json and weights, or "
                    "an id fetched with `hf download ID`; null = random initialisation)"
                )
        for name, c in self.checkpoints.items():
            if not self._exists(c["path"]):
                raise UserError(
                    f"evaluate_checkpoints.{name}: path {c['path']!r} does not exist (expected a "
                    "checkpoint folder with config.json and model.safetensors or pytorch_model.bin, "
                    "or a Hugging Face id in the local cache)"
                )
            if c.get("stats") and not self._path(c["stats"]).is_file():
                raise UserError(
                    f"evaluate_checkpoints.{name}: stats {c['stats']!r} does not exist (expected the "
                    "dataset_stat.json of the checkpoint's training data, or null)"
                )
            pipeline = self._path(c["path"]) / "pipeline.json"
            if c.get("stats") and pipeline.is_file() and "dataset_stat" in _json_or_empty(pipeline):
                raise UserError(
                    f"evaluate_checkpoints.{name}: stats {c['stats']!r} is set but {pipeline} carries the "
                    "statistics the checkpoint was trained with (dataset_stat); statistics reach "
                    "evaluation one way: set stats: null"
                )

    # ------------------------------------------------------------------------------------------------ shared stages
    def demo_settings(self, run: str) -> dict:
        d = self.settings(run)["demos"]
        if d["source"] in ("folder", "lerobot"):
            return {"source": d["source"], "folder": str(self._path(d["folder"]).resolve())}
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

    def data_settings(self, run: str) -> dict:
        d, s = self.runs[run]["demos"], self.runs[run]["data"]
        return {
            "code": stage_code("convert", "stats"),
            "demos": self.demo_settings(run),
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
        """What `convert` reads: the expert's output folder, or the configured folder of demo files."""
        if settings["source"] in ("folder", "lerobot"):
            return settings["folder"]
        return f"{self.results}/cache/demos/{key_of(settings)}"

    def data_path(self, run: str) -> str:
        return f"{self.results}/cache/data/{key_of(self.data_settings(run))}/data.h5"

    def stats_path(self, run: str) -> str:
        return f"{self.results}/cache/data/{key_of(self.data_settings(run))}/dataset_stat.json"

    def language_path(self, run: str) -> str:
        return f"{self.results}/cache/language/{key_of(self.language_settings(run))}/lang.safetensors"

    @cached_property
    def demos(self) -> dict[str, dict]:
        return {
            key_of(self.demo_settings(r)): self.demo_settings(r)
            for r in [*self.runs, *self.replays]
            if self.demo_settings(r)["source"] == "expert"
        }

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
        return f"{self.results}/train/{self.train_key(run)}"

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
        return layout.export_dir(f"{self.results}/train/{key}", step)

    def previous_export(self, key: str, step: int) -> list[str]:
        prev = self.previous_step(key, step)
        return [] if prev is None else [self.export_path(key, prev)]

    # ------------------------------------------------------------------------------------------------ evaluation
    @property
    def targets(self) -> list[str]:
        return list(self.runs) + list(self.replays) + list(self.checkpoints)

    def kind(self, target: str) -> str:
        """run (trained here), replay (open-loop replay of a run's demos) or checkpoint (evaluation only)."""
        return "run" if target in self.runs else REPLAY if target in self.replays else "checkpoint"

    def replay_settings(self, target: str) -> dict:
        """What the replay rule passes on: the demos (their folder), which of them, and the evaluation pairs."""
        s = self.replays[target]
        return {
            "demos": self.demos_input(self.demo_settings(target)),
            "demos_per_task": s["data"]["demos_per_task"],
            **self.eval_settings(target),
        }

    def eval_settings(self, target: str, step: int | None = None) -> dict:
        """The evaluation settings the evaluate rule passes on; with ``step``, its episodes per task are that
        checkpoint's (the budget's intermediate count for every evaluated step but the final one)."""
        e = self.settings(target)["eval"]
        out = {k: e[k] for k in EVAL_KEYS} | {"tasks": [str(t) for t in e["tasks"]]}
        if target in self.checkpoints:  # a checkpoint made elsewhere: its entry says which weights (auto: EMA if any)
            out["weights"] = self.checkpoints[target].get("weights", "auto")
        if step is not None:
            out["episodes_per_task"] = self.eval_episodes(target, step)
        return out

    def eval_gpus(self, target: str) -> int:
        return 0 if target in self.replays else self.settings(target)["eval"]["gpus"]

    def horizons(self, target: str, step: int | None = None) -> list[int]:
        """Execution horizons of a target; with ``step``, those evaluated at that checkpoint (the budget's
        intermediate horizons at every evaluated step but the final one)."""
        if target in self.replays:
            return [REPLAY_HORIZON]
        e = self.settings(target)["eval"]
        if step is not None and step != self.eval_steps(target)[-1] and e.get("intermediate_horizons"):
            return list(e["intermediate_horizons"])
        return list(e["exec_horizons"])

    def eval_steps(self, target: str) -> list[int]:
        """The evaluated checkpoints (the evaluation budget, eval.checkpoints): the final segment end always, every
        k-th segment end, the last N and the listed steps; an evaluation-only checkpoint: its step."""
        if target in self.replays:
            return [REPLAY_STEP]
        if target not in self.runs:
            return [self.checkpoints[target]["step"]]
        ends = self.segment_steps(target)
        c = self.runs[target]["eval"].get("checkpoints") or {}
        every, last, listed = c.get("every", 1), c.get("last", 0), c.get("steps", [])
        bad = sorted(set(listed) - set(ends))
        if bad:
            shown = ", ".join(map(str, ends[:6])) + (", ..." if len(ends) > 6 else "")
            raise UserError(
                f"runs.{target}.eval.checkpoints.steps: {bad} are not segment ends of the training "
                f"(expected steps from {shown}, {ends[-1]}: multiples of checkpointing_period and "
                "max_steps)"
            )
        chosen = {ends[-1]} | set(listed) | set(ends[len(ends) - last :] if last else [])
        if every:
            chosen |= {s for i, s in enumerate(ends, 1) if i % every == 0}
        return sorted(chosen)

    def eval_episodes(self, target: str, step: int) -> int:
        """Episodes per task at a checkpoint: eval.episodes_per_task at the final one, the intermediate count at the
        others (when set)."""
        e = self.settings(target)["eval"]
        if step != self.eval_steps(target)[-1] and e.get("intermediate_episodes_per_task"):
            return min(e["intermediate_episodes_per_task"], e["episodes_per_task"])
        return e["episodes_per_task"]

    def eval_identity(self, target: str, step: int, horizon: int) -> dict:
        """What decides an evaluation's results: its settings at that step and horizon, the evaluated weights
        (a run's training key, which covers its settings, data and code; the files of a checkpoint made elsewhere;
        a replay's demos) and the evaluation code."""
        if target in self.replays:
            r = self.replay_settings(target)
            weights = {"demos": self.demo_settings(target), "demos_per_task": r["demos_per_task"]}
            return {"eval": self.eval_settings(target), "replay": weights, "code": code_fingerprint("replay")}
        if target in self.runs:
            weights = {"training": self.train_key(target), "step": step}
        else:
            weights = {"checkpoint": self.checkpoints[target], "files": self._checkpoint_files(target)}
        return {
            "eval": self.eval_settings(target, step),
            "horizon": horizon,
            "weights": weights,
            "code": code_fingerprint("evaluate"),
        }

    def _checkpoint_files(self, target: str) -> dict[str, str | None]:
        """Identities of an evaluation-only checkpoint's files (size and first/last MiB of the weights), so a
        checkpoint replaced in place is evaluated again; a hub id stands for itself."""
        from rdt.utils.hashing import file_identity

        path = self.checkpoints[target]["path"]
        folder = self._path(path)
        if not folder.exists() and _looks_like_hub_id(path):  # the cached snapshot of a hub id
            folder = _hub_snapshot(path) or folder
        names = ("config.json", "pipeline.json", "model.safetensors", "pytorch_model.bin", "ema/model.safetensors")
        return {n: file_identity(folder / n) for n in names if (folder / n).is_file()}

    def eval_key(self, target: str, step: int, horizon: int) -> str:
        return key_of(self.eval_identity(target, step, horizon))

    def summary_path(self, target: str, step: int, horizon: int) -> str:
        """The evaluation's summary, named by its identity (summary-<key>.json): a changed setting, checkpoint or
        code is a missing file, so it runs again whether or not Snakemake's .snakemake/ survived."""
        return layout.summary_path(f"{self.results}/{target}", step, horizon, self.eval_key(target, step, horizon))

    def summaries(self, target: str) -> list[str]:
        return [self.summary_path(target, s, h) for s in self.eval_steps(target) for h in self.horizons(target, s)]

    def all_summaries(self) -> list[str]:
        return [s for t in self.targets for s in self.summaries(t)]

    def text_encoder(self, target: str) -> str:
        """Text encoder of a run's training, or of an evaluation-only checkpoint (configured, else its
        pipeline.json)."""
        if target in self.runs:
            return self.resolved_train(target)["text_encoder"]
        entry = self.checkpoints[target]
        if entry.get("text_encoder"):
            return entry["text_encoder"]
        pipeline = self._path(entry["path"]) / "pipeline.json"
        try:
            return read_json(pipeline)["text_encoder"]
        except (UserError, KeyError, TypeError):
            raise UserError(
                f"evaluate_checkpoints.{target}: {pipeline} does not name the text encoder; set "
                "text_encoder for this entry"
            ) from None

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
        return f"{self.results}/cache/language/{key_of(self.task_language_settings(target))}/tasks.safetensors"

    @cached_property
    def task_language(self) -> dict[str, dict]:
        evaluated = [t for t in self.targets if t not in self.replays]  # a replay conditions on no instruction
        return {key_of(self.task_language_settings(t)): self.task_language_settings(t) for t in evaluated}

    def checkpoint_ref(self, target: str, step: int) -> str:
        """What `rdt evaluate --checkpoint` is given: a run's exported step, or an evaluation-only checkpoint's
        folder or Hugging Face id."""
        if target in self.runs:
            return self.export_path(target, step)
        return self.checkpoints[target]["path"]

    def checkpoint_input(self, target: str, step: int) -> list[str]:
        """The evaluation's checkpoint as a file input: a run's export or a local folder; none for a hub id (it is
        not a path; `rdt evaluate` loads it from the local Hugging Face cache)."""
        ref = self.checkpoint_ref(target, step)
        if target in self.runs or self._path(ref).exists() or not _looks_like_hub_id(ref):
            return [ref]
        return []

    def checkpoint_flags(self, target: str) -> str:
        """`rdt evaluate`'s flags about the checkpoint: which weights (a run: eval.weights; a checkpoint made
        elsewhere: its entry's, ``auto`` = EMA when the folder has them), and for a folder without pipeline.json
        (a released checkpoint) the entry's vision encoder and control frequency."""
        weights = self.eval_settings(target)["weights"]
        flags = [f"--weights {weights}"] if weights != "auto" else []
        if target in self.checkpoints:
            c = self.checkpoints[target]
            flags += [f"--vision-encoder {c['vision_encoder']}"] if c.get("vision_encoder") else []
            flags += [f"--control-frequency {c['control_frequency']}"] if c.get("control_frequency") else []
        return " ".join(flags)

    def eval_stats(self, target: str) -> list[str]:
        """The statistics file given to an evaluation: none for a run (its export's pipeline.json carries the
        statistics it was trained with), the configured file for a checkpoint made elsewhere."""
        if target in self.runs:
            return []
        stats = self.checkpoints[target].get("stats")
        return [stats] if stats else []

    # ------------------------------------------------------------------------------------------------ the report
    def settings_document(self, target: str) -> dict:
        """``results/<target>/settings.json``: what the report audits and records as provenance."""
        doc = {
            "format": SETTINGS_FORMAT,
            "target": target,
            "exec_horizons": self.horizons(target),
            "eval": self.eval_settings(target),
            "code": {"evaluate": code_fingerprint("evaluate")},
            "eval_plan": json.loads(json.dumps(self.eval_cost(target))),
            # exactly the evaluations of the current plan, each by its identity-named summary: the report reads these
            "evaluations": [
                {
                    "step": s,
                    "horizon": h,
                    "summary": os.path.relpath(self.summary_path(target, s, h), f"{self.results}/{target}"),
                }
                for s in self.eval_steps(target)
                for h in self.horizons(target, s)
            ],
        }
        if target in self.replays:
            doc.update(
                kind=REPLAY,
                code={"replay": code_fingerprint("replay")},
                demos=self.demo_settings(target),
                demos_per_task=self.replays[target]["data"]["demos_per_task"],
                workflow=self.replays[target],
            )
        elif target in self.runs:
            identity = self.train_identity(target)
            doc.update(
                kind="run",
                demos=self.demo_settings(target),
                demos_per_task=self.runs[target]["data"]["demos_per_task"],
                gpus=self.runs[target]["train"]["gpus"],
                train=self.train_settings(target),
                train_folder=os.path.relpath(self.train_dir(target), f"{self.results}/{target}"),
                train_code=identity["code"],
                max_steps=self.runs[target]["train"]["max_steps"],
                workflow=self.runs[target],
            )
        else:
            doc.update(kind="checkpoint", checkpoint=self.checkpoints[target])
        return doc

    def report_folders(self) -> list[str]:
        return [f"{self.results}/{t}" for t in self.targets]

    # ------------------------------------------------------------------------------------------------ the budget
    def eval_cost(self, target: str) -> dict:
        """What a target's evaluations cost, before anything runs: per horizon the jobs, episodes, the upper bounds
        of simulator steps (every episode to the step limit, settle steps included) and of policy calls (one per
        ``H`` steps), and hours from ``eval.rates``; with the training's samples for a run."""
        from rdt.libero import suites

        e = self.settings(target)["eval"]
        rates = e.get("rates") or {}
        n_tasks = len(suites.select_tasks(e["suite"], [str(t) for t in e["tasks"]]))
        max_steps = e["max_steps"] or suites.MAX_STEPS[e["suite"]]
        per_h: dict[int, dict] = {}
        for step in self.eval_steps(target):
            episodes = n_tasks * self.eval_episodes(target, step)
            for h in self.horizons(target, step):
                c = per_h.setdefault(h, {"jobs": 0, "episodes": 0, "sim_steps_max": 0, "policy_calls_max": 0})
                c["jobs"] += 1
                c["episodes"] += episodes
                c["sim_steps_max"] += episodes * (max_steps + suites.SETTLE_STEPS)
                c["policy_calls_max"] += episodes * (-(-max_steps // h) if h else 0)  # replay: no policy
        for c in per_h.values():
            sim = c["episodes"] * rates.get("episode_overhead_s", 0.0) + c["sim_steps_max"] * rates["sim_step_s"]
            policy = c["policy_calls_max"] * rates["policy_call_s"] if rates.get("policy_call_s") is not None else None
            c["hours_max"] = round((sim + (policy or 0.0)) / 3600, 2)
            c["policy_hours_max"] = None if policy is None else round(policy / 3600, 2)
        total = {
            k: sum(c[k] for c in per_h.values()) for k in ("jobs", "episodes", "sim_steps_max", "policy_calls_max")
        }
        total["hours_max"] = round(sum(c["hours_max"] for c in per_h.values()), 2)
        gpus = e.get("gpus") or 0
        total["gpu_hours_max"] = round(total["hours_max"] * gpus, 2)
        out = {
            "steps": self.eval_steps(target),
            "episodes_per_task": {s: self.eval_episodes(target, s) for s in self.eval_steps(target)},
            "horizons": {s: self.horizons(target, s) for s in self.eval_steps(target)},
            "tasks": n_tasks,
            "max_steps": max_steps,
            "per_horizon": per_h,
            "total": total,
            "rates": dict(rates),
            "policy_calls_unknown": rates.get("policy_call_s") is None,
            "gpus": gpus,
        }
        if target in self.runs:
            t = self.runs[target]["train"]
            train = self.resolved_train(target)
            samples = t["max_steps"] * train["effective_batch_size"]
            # model work: a training sample costs one forward and one backward pass (about 3 forward passes) of the
            # transformer; a policy call 5 forward passes (the denoising steps); both one vision-encoder pass. So
            # evaluation / training model work <= (5 x calls) / (3 x samples), whatever the encoder costs.
            out["train"] = {
                "max_steps": t["max_steps"],
                "samples": samples,
                "gpus": t["gpus"],
                "model_work_ratio_max": round(5 * total["policy_calls_max"] / (3 * samples), 4),
            }
            if rates.get("train_step_s"):
                hours = t["max_steps"] * rates["train_step_s"] / 3600
                out["train"]["hours"] = round(hours, 2)
                out["train"]["gpu_hours"] = round(hours * max(t["gpus"], 1), 2)
        return out


def _json_or_empty(path: Path) -> dict:
    try:
        value = read_json(path)
    except UserError:
        return {}
    return value if isinstance(value, dict) else {}


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and ":" not in text


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot folder of ``repo_id`` (None when it is not cached)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(repo_id, "config.json")
    return Path(config).parent if isinstance(config, str) else None


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


# ============================================================================================ settings document
def write_settings(path: str | os.PathLike, document: dict) -> None:
    write_text(path, json.dumps(document, indent=2) + "\n")


def read_settings(folder: str | os.PathLike) -> dict | None:
    """The settings document of a target folder (None when it has none); ``train_folder`` is resolved to a path.
    A document of another format is a UserError naming the file."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return None
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != SETTINGS_FORMAT:
        raise UserError(
            f"{path}: not a settings document of format {SETTINGS_FORMAT!r} (written by the workflow's "
            "target_settings rule from rdt.plan.Plan.settings_document); rerun the workflow"
        )
    if doc.get("train_folder"):
        doc["train_folder"] = str(Path(folder) / doc["train_folder"])
    return doc


def train_folder(folder: str | os.PathLike, document: dict | None) -> Path:
    """The training folder of a target (``train/`` inside it when the document names none)."""
    if document and document.get("train_folder"):
        return Path(document["train_folder"])
    return Path(folder) / "train"


# ============================================================================================ `python -m rdt plan`
def _n(x: float | int | None) -> str:
    if x is None:
        return "unknown"
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"


def _steps_text(steps: list[int]) -> str:
    return (
        ", ".join(map(str, steps))
        if len(steps) <= 8
        else f"{', '.join(map(str, steps[:4]))}, ..., {', '.join(map(str, steps[-2:]))}"
    )


def cost_lines(plan: Plan, target: str, cost: dict | None = None) -> list[str]:
    """The cost table of one target, as `python -m rdt plan` prints it (the report shows the same numbers)."""
    c = cost or plan.eval_cost(target)
    steps = c["steps"]
    eps = {int(k): v for k, v in c["episodes_per_task"].items()}
    final = steps[-1]
    inter = sorted({v for s, v in eps.items() if s != final})
    kind = plan.kind(target)
    head = f"{kind} {target}: {len(steps)} checkpoint(s) evaluated"
    if target in plan.runs:
        head += f" of {len(plan.segment_steps(target))} segment ends"
    head += f" (steps {_steps_text(steps)}); {c['tasks']} task(s) x {eps[final]} episodes at the final step"
    if inter:
        head += f", x {'/'.join(map(str, inter))} at the others"
    head += f"; at most {c['max_steps']} policy steps per episode"
    lines = [
        head,
        f"  {'H':>4} {'jobs':>6} {'episodes':>10} {'sim steps (max)':>17} {'policy calls (max)':>19} "
        f"{'hours (max)':>12}",
    ]
    for h, r in sorted(c["per_horizon"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"  {int(h):>4} {r['jobs']:>6,} {r['episodes']:>10,} {r['sim_steps_max']:>17,} "
            f"{r['policy_calls_max']:>19,} {_n(r['hours_max']):>12}"
        )
    t = c["total"]
    lines.append(
        f"  {'all':>4} {t['jobs']:>6,} {t['episodes']:>10,} {t['sim_steps_max']:>17,} "
        f"{t['policy_calls_max']:>19,} {_n(t['hours_max']):>12}"
    )
    if c.get("policy_calls_unknown"):
        lines.append("  hours leave out the policy (eval.rates.policy_call_s is null)")
    if "train" in c:
        tr = c["train"]
        ratio = tr["model_work_ratio_max"]
        lines.append(
            f"  training: {tr['max_steps']:,} steps x effective batch = {tr['samples']:,} samples; "
            f"evaluation model work <= {100 * ratio:.1f}% of training's (5 x policy calls / 3 x samples)"
            + ("" if ratio <= 1 else "  ** evaluation costs more model work than training **")
        )
        lines.append(
            f"  device hours (max): evaluation {_device_hours(t['gpu_hours_max'], t['hours_max'], c['gpus'])}, "
            "training "
            + (
                _device_hours(tr["gpu_hours"], tr["hours"], tr["gpus"])
                if "gpu_hours" in tr
                else "unknown (set eval.rates.train_step_s)"
            )
        )
    return lines


def _device_hours(gpu_hours: float, hours: float, gpus: int) -> str:
    """GPU-hours when the stage runs on GPUs; on the CPU (``gpus: 0``) its wall-clock hours, called what they are."""
    return f"{_n(gpu_hours)} GPU-hours" if gpus else f"{_n(hours)} CPU hours (gpus: 0)"


def add_arguments(p) -> None:
    p.add_argument(
        "--configfile",
        required=True,
        metavar="FILE",
        help="workflow configuration (as given to snakemake --configfile)",
    )
    p.add_argument(
        "--target", nargs="+", metavar="NAME", help="runs or evaluation-only checkpoints to show (default: all)"
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="a Snakemake profile folder (e.g. slurm): also show each job's CPUs, memory and runtime as the "
        "profile requests them against what the settings need (loader workers per GPU, evaluation hours at the "
        "rates)",
    )


def main(args) -> int:
    from rdt.utils.files import read_yaml

    config = read_yaml(args.configfile)
    p = Plan(config, check_files=False)
    targets = args.target or p.targets
    unknown = sorted(set(targets) - set(p.targets))
    if unknown:
        raise UserError(f"--target {unknown}: not a run or checkpoint of {args.configfile} ({', '.join(p.targets)})")
    first = p.settings(targets[0])["eval"].get("rates") or {}
    print(
        f"evaluation plan of {args.configfile} (upper bounds: every episode runs to the step limit); rates: "
        f"simulator {first.get('sim_step_s')} s/step + {first.get('episode_overhead_s')} s/episode, policy "
        f"{first.get('policy_call_s') or 'unknown'} s/call, from: {first.get('source')}"
    )
    from rdt import resources

    profile = resources.read_profile(args.profile) if args.profile else None
    for target in targets:
        print()
        print("\n".join(cost_lines(p, target) + resources.lines(p, target, profile)))
    return 0
