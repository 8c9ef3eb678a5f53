# File lookups for the rules. The experiment plan (config overlays, cache keys, training identity, segment schedule,
# evaluation targets, the settings document) is rdt/plan/, importable and unit-tested without Snakemake.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from rdt import layout, train_config
from rdt.errors import UserError
from rdt.plan import Plan, code_fingerprint, write_marker, write_settings
from rdt.report import names as report_files  # the report folder's file names
from rdt.utils.atomic import write_text


def await_demos(key):
    """Whether an expert-code edit left the demos as they were is known once the current code's generation exists
    (rdt/plan/demos.py): until then this raises Snakemake's IncompleteCheckpointException, and the jobs whose keys
    depend on it are planned after the checkpoint expert_demos of that key has run."""
    checkpoints.expert_demos.get(key=key)


try:
    PLAN = Plan(config, await_demos=await_demos)
except UserError as e:
    raise WorkflowError(str(e)) from None

# The rules call `python -m rdt` and `accelerate` of the environment Snakemake runs in (with
# --software-deployment-method conda, the environment of envs/rdt.yaml comes first instead).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

RESULTS = PLAN.results
RUNS = PLAN.runs
TARGETS = PLAN.targets
REPLAYS = list(PLAN.replays)
EVALUATED = [t for t in TARGETS if t not in PLAN.replays]  # targets with a model
# Code fingerprints of the modules each stage runs (comments and docstrings excluded): a code change reruns the
# stage, a comment edit does not. Snakemake's own `code` trigger sees only the rule's text, not imported modules.
# (the expert's code is each generation's own: PLAN.demo_generation)
CODE = {stage: code_fingerprint(stage) for stage in ("convert", "stats", "encode", "evaluate", "replay", "report")}


def train_run(wildcards):
    """A run that uses the training of the wildcard's key (they all share its settings)."""
    return PLAN.trainings[wildcards.key]


def previous_export(wildcards):
    return PLAN.previous_export(wildcards.key, int(wildcards.step))


def checkpoint_input(wildcards):
    return PLAN.checkpoint_input(wildcards.target, int(wildcards.step))


def expert_demos():
    """Every generation of expert demos the current code makes: named by `all` so that all of them run at once
    (those whose content decides the keys after them included)."""
    return [layout.demos_dir(RESULTS, key) for key in PLAN.demos]


def report_inputs(wildcards):
    """What `all` asks for: the report, and every evaluation, settings document and key marker it reads. Naming the
    evaluations and markers here matters: Snakemake does not rerun a job whose output exists when one of its inputs
    is missing, so a new identity-named summary (a changed setting or code) or marker (a changed settings document
    or run.yaml, also one changed back) is requested directly, which then updates what depends on it (its input is
    newer), with or without .snakemake/ metadata. A function: the keys are known only once the expert demos they
    depend on are (await_demos)."""
    return (
        [layout.report_file(RESULTS, report_files.RESULTS_TABLE)]
        + PLAN.all_summaries()
        + [PLAN.settings_path(t) for t in TARGETS]
        + [PLAN.settings_marker(t) for t in TARGETS]
        + [PLAN.run_marker(key) for key in PLAN.trainings]
        + [PLAN.report_marker()]
    )


def launch_precision(wildcards, resources):
    """accelerate launch's --mixed_precision: train.mixed_precision resolved as the trainer resolves it (auto = bf16
    with GPUs, no without; TrainConfig.resolved_mixed_precision). The trainer passes its own value to Accelerator,
    which takes precedence over the launcher's; giving the launcher every setting it would otherwise default
    (processes, machines, precision, dynamo) keeps accelerate's "values were not passed ... defaults used" warning
    out of the top of the log."""
    precision = PLAN.train_settings(train_run(wildcards))["mixed_precision"]
    if precision == "auto":
        return "bf16" if resources.gpu > 0 else "no"
    return precision
