"""The experiment plan: what the workflow runs for a configuration, importable and tested without Snakemake.

``Plan(config)`` takes the workflow configuration (``config/config.yaml`` with any ``--config`` overrides; numbers
given on the command line arrive as strings and are converted by the schema's types), fills in the schema's
defaults, validates it, and answers every question the rules ask:

- the runs' effective settings (the base sections with each run's overrides);
- the content keys of the shared stages (demos, training data, training language, per-task evaluation language,
  training) and their paths under ``results/cache`` and ``results/train``; the data of expert demos is keyed by
  the earliest generation with the current code's content, so an expert-code edit that regenerates identical
  demos retrains nothing (``demos``);
- a training's identity: its settings (minus the bookkeeping keys that do not change the weights) and the
  fingerprint of the code that determines its weights (``rdt.train_config.code_fingerprint``), the same identity
  the trainer checks before resuming and records in each export's ``pipeline.json``;
- the segment schedule (which export each segment resumes from), the evaluation targets and their inputs;
- the settings document (``results/<target>/settings.json``) that the report reads with :func:`read_settings`.

Evaluation never feeds training: a training depends on the demos, data, training language (training data + text
encoder) and train settings only, so runs that differ only in ``eval`` share one training (``results/train/<key>``).

config     the configuration: the schema, --config strings to its types, defaults, validation, overlays
keys       content keys (key_of) and the stages' code fingerprints (STAGE_MODULES)
checks     the checks at parse time: target names, numbers that must fit, task selections, files the config names
hub        checkpoints named by a Hugging Face id: an id or a path, and the local cache
demos      which generation of expert demos a run's data is made from (an early cutoff for expert-code edits)
targets    the three kinds of target (a run, a replay run, an evaluation-only checkpoint), each answering for itself
core       the Plan: settings, shared stages, trainings and segments; per-target questions go to the targets
cost       what a target's evaluations and a run's training cost, and the table `python -m rdt plan` prints
documents  the settings document: built from the plan, written, read back (read_settings, train_folder)
command    `python -m rdt plan` (its options and help)

What other modules, the workflow and the tests use is imported from here.
"""

from __future__ import annotations

from rdt.plan.checks import check_target_names
from rdt.plan.config import load_schema
from rdt.plan.core import Plan
from rdt.plan.documents import SETTINGS_FILE, read_settings, train_folder, write_marker, write_settings
from rdt.plan.keys import STAGE_MODULES, code_fingerprint, key_of
from rdt.plan.targets import REPLAY, REPLAY_HORIZON, REPLAY_STEP

__all__ = [
    "REPLAY",
    "REPLAY_HORIZON",
    "REPLAY_STEP",
    "SETTINGS_FILE",
    "STAGE_MODULES",
    "Plan",
    "check_target_names",
    "code_fingerprint",
    "key_of",
    "load_schema",
    "read_settings",
    "train_folder",
    "write_marker",
    "write_settings",
]
