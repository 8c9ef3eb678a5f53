"""What a run asks of a cluster before it starts: disk per training, and each job's CPUs, memory and wall time
against what a Snakemake profile (``slurm/config.yaml``) requests. `python -m rdt plan --profile slurm` prints it.

Sizes come from the model preset's parameter count (built on PyTorch's meta device: no memory, no weights): a
resumable checkpoint holds the fp32 weights, the fp32 EMA and AdamW's two fp32 moments (4 copies), an export the
weights and the EMA (2 copies; fp32 as trained, where the released file is bf16). Exports are never pruned (every
evaluated step needs its own); checkpoints are kept up to ``checkpoints_total_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from rdt.errors import UserError
from rdt.plan.cost import episode_bounds, simulator_seconds

FP32 = 4  # bytes
CHECKPOINT_COPIES = 4  # weights, EMA, AdamW exp_avg, exp_avg_sq
EXPORT_COPIES = 2  # weights, EMA
GB = 1e9


@cache
def parameters(preset: str) -> int:
    """The parameter count of a model preset (the model built on the meta device)."""
    import torch

    from rdt.model.config import RDTConfig
    from rdt.model.runner import RDTRunner

    with torch.device("meta"):
        runner = RDTRunner(RDTConfig.preset(preset))
    return sum(p.numel() for p in runner.parameters())


@dataclass(frozen=True)
class Disk:
    checkpoint_gb: float
    kept: int
    export_gb: float
    exports: int

    @property
    def total_gb(self) -> float:
        return self.checkpoint_gb * self.kept + self.export_gb * self.exports


def training_disk(plan, run: str) -> Disk:
    """The most disk a run's training folder takes: the kept resumable checkpoints and every export."""
    train = plan.resolved_train(run)
    n = parameters(train["model"])
    segments = len(plan.segment_steps(run))
    return Disk(
        checkpoint_gb=n * FP32 * CHECKPOINT_COPIES / GB,
        kept=min(int(train["checkpoints_total_limit"] or segments), segments),
        export_gb=n * FP32 * EXPORT_COPIES / GB,
        exports=segments,
    )


def read_profile(folder: str | Path) -> dict[str, Any]:
    """A Snakemake profile's config.yaml (YTE templates read as plain YAML: their conditional keys are skipped)."""
    from rdt.utils.files import read_yaml

    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise UserError(f"--profile {folder}: no config.yaml there (expected a Snakemake profile folder)")
    doc = read_yaml(path)
    return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class Job:
    rule: str
    what: str
    cpus_needed: int | None
    cpus: int | None
    hours: float | None
    runtime_h: float | None
    mem_gb: float | None

    @property
    def problems(self) -> list[str]:
        out = []
        if self.cpus_needed and self.cpus is not None and self.cpus < self.cpus_needed:
            out.append(f"{self.cpus_needed} CPUs needed, {self.cpus} requested")
        if self.hours is not None and self.runtime_h is not None and self.hours > self.runtime_h:
            out.append(f"up to {self.hours:.1f} h needed, runtime {self.runtime_h:g} h")
        return out


def resource_value(value: Any, where: str, attempt: int = 1) -> float | None:
    """A profile's resource value at ``attempt``: a number, or an expression of ``attempt`` as Snakemake evaluates
    it (``"64000 * attempt"``: each retry asks for more)."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        result = eval(str(value), {"__builtins__": {}}, {"attempt": attempt, "min": min, "max": max})  # noqa: S307
        return float(result)
    except Exception as e:  # a typo in the profile: name the key and what is allowed
        raise UserError(
            f'{where}: {value!r} is not a number or an expression of attempt (e.g. "64000 * attempt"): {e}'
        ) from None


def _requests(profile: dict, rule: str, default_threads: int) -> tuple[int, float | None, float | None]:
    """threads, runtime (hours) and memory (GB, at the first attempt) the profile gives ``rule``."""
    threads = (profile.get("set-threads") or {}).get(rule, default_threads)
    res = {**(profile.get("default-resources") or {}), **((profile.get("set-resources") or {}).get(rule) or {})}
    runtime = resource_value(res.get("runtime"), f"profile set-resources {rule}: runtime")
    mem = resource_value(res.get("mem_mb"), f"profile set-resources {rule}: mem_mb")
    return int(threads), (float(runtime) / 60 if runtime else None), (float(mem) / 1000 if mem else None)


def jobs(plan, target: str, profile: dict) -> list[Job]:
    """The heaviest training segment and evaluation job of ``target`` with what they need and get."""
    out = []
    e = plan.settings(target)["eval"]
    rates = e.get("rates") or {}
    if target in plan.runs:
        train = plan.resolved_train(target)
        gpus = plan.runs[target]["train"]["gpus"]
        need = max(gpus, 1) * (1 + int(train["dataloader_num_workers"]))
        threads, runtime_h, mem = _requests(profile, "train", 1)
        step_s = rates.get("train_step_s")
        hours = train["checkpointing_period"] * step_s / 3600 if step_s else None
        what = f"a segment of {train['checkpointing_period']:,} steps ({max(gpus, 1)} x (1 trainer + "
        what += f"{train['dataloader_num_workers']} loader workers))"
        out.append(Job("train", what, need, threads, hours, runtime_h, mem))
    if target in plan.replays:
        return out
    threads, runtime_h, mem = _requests(profile, "evaluate", 1)
    cost = plan.eval_cost(target)  # the heaviest job: the final checkpoint at its shortest horizon
    final = cost["steps"][-1]
    episodes = cost["tasks"] * cost["episodes_per_task"][final]
    horizon = min(cost["horizons"][final])
    sim_steps, calls = episode_bounds(cost["max_steps"], horizon)
    hours = None
    if rates.get("sim_step_s"):
        policy = episodes * calls * (rates.get("policy_call_s") or 0.0)
        hours = (simulator_seconds(episodes, episodes * sim_steps, rates) / max(threads, 1) + policy) / 3600
    what = f"the final checkpoint at H={horizon}: {episodes:,} episodes on {threads} simulator(s)"
    if rates.get("policy_call_s") is None:
        what += ", policy time unknown (not counted)"
    out.append(Job("evaluate", what, None, threads, hours, runtime_h, mem))
    return out


def lines(plan, target: str, profile: dict | None) -> list[str]:
    """`rdt plan`'s resource lines of one target (disk always; jobs when a profile is given)."""
    out = []
    if target in plan.runs:
        d = training_disk(plan, target)
        out.append(
            f"  disk: training folder up to {d.total_gb:,.1f} GB = {d.kept} resumable checkpoint(s) x "
            f"{d.checkpoint_gb:,.2f} GB + {d.exports} export(s) x {d.export_gb:,.2f} GB (fp32; exports are never "
            "pruned)"
        )
    if profile is None:
        return out
    for job in jobs(plan, target, profile):
        runtime = "unset" if job.runtime_h is None else f"{job.runtime_h:g} h"
        mem = "unset" if job.mem_gb is None else f"{job.mem_gb:g} GB"
        hours = "unknown" if job.hours is None else f"{job.hours:.1f} h"
        line = f"  {job.rule} job, {job.what}: {job.cpus} CPUs, {mem}, runtime {runtime}; needs up to {hours}"
        if job.problems:
            line += "  ** " + "; ".join(job.problems) + " **"
        out.append(line)
    return out
