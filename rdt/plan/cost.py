"""What a target's evaluations (and a run's training) cost, before anything runs: :func:`eval_cost` (the numbers
``Plan.eval_cost`` gives, recorded in each settings document as ``eval_plan`` and shown by the report) and
:func:`cost_lines` (the table `python -m rdt plan` prints).

Evaluation costs are upper bounds: every episode runs to the step limit. Hours come from ``eval.rates``.
"""

from __future__ import annotations

from rdt.plan.targets import Run


def episode_bounds(max_steps: int, horizon: int) -> tuple[int, int]:
    """Upper bounds of one episode: simulator steps (to the step limit, settle steps included) and policy calls (one
    per ``horizon`` steps; none for a replay, horizon 0)."""
    from rdt.libero import suites

    return max_steps + suites.SETTLE_STEPS, (-(-max_steps // horizon) if horizon else 0)


def simulator_seconds(episodes: int, sim_steps: int, rates: dict) -> float:
    """Simulator time of ``episodes`` episodes with ``sim_steps`` steps in all, at ``eval.rates``."""
    return episodes * rates.get("episode_overhead_s", 0.0) + sim_steps * rates["sim_step_s"]


def eval_cost(plan, target: str) -> dict:
    """What a target's evaluations cost, before anything runs: per horizon the jobs, episodes, the upper bounds of
    simulator steps (every episode to the step limit, settle steps included) and of policy calls (one per ``H``
    steps), and hours from ``eval.rates``; with the training's samples for a run."""
    from rdt.libero import suites

    e = plan.settings(target)["eval"]
    rates = e.get("rates") or {}
    n_tasks = len(suites.select_tasks(e["suite"], [str(t) for t in e["tasks"]]))
    max_steps = e["max_steps"] or suites.MAX_STEPS[e["suite"]]
    per_h: dict[int, dict] = {}
    for step in plan.eval_steps(target):
        episodes = n_tasks * plan.eval_episodes(target, step)
        for h in plan.horizons(target, step):
            c = per_h.setdefault(h, {"jobs": 0, "episodes": 0, "sim_steps_max": 0, "policy_calls_max": 0})
            c["jobs"] += 1
            c["episodes"] += episodes
            sim_steps, calls = episode_bounds(max_steps, h)
            c["sim_steps_max"] += episodes * sim_steps
            c["policy_calls_max"] += episodes * calls
    for c in per_h.values():
        sim = simulator_seconds(c["episodes"], c["sim_steps_max"], rates)
        policy = c["policy_calls_max"] * rates["policy_call_s"] if rates.get("policy_call_s") is not None else None
        c["hours_max"] = round((sim + (policy or 0.0)) / 3600, 2)
        c["policy_hours_max"] = None if policy is None else round(policy / 3600, 2)
    total = {k: sum(c[k] for c in per_h.values()) for k in ("jobs", "episodes", "sim_steps_max", "policy_calls_max")}
    total["hours_max"] = round(sum(c["hours_max"] for c in per_h.values()), 2)
    gpus = e.get("gpus") or 0
    total["gpu_hours_max"] = round(total["hours_max"] * gpus, 2)
    out = {
        "steps": plan.eval_steps(target),
        "episodes_per_task": {s: plan.eval_episodes(target, s) for s in plan.eval_steps(target)},
        "horizons": {s: plan.horizons(target, s) for s in plan.eval_steps(target)},
        "tasks": n_tasks,
        "max_steps": max_steps,
        "per_horizon": per_h,
        "total": total,
        "rates": dict(rates),
        "policy_calls_unknown": rates.get("policy_call_s") is None,
        "gpus": gpus,
    }
    if isinstance(plan.target(target), Run):
        out["train"] = train_cost(plan, target, total["policy_calls_max"], rates)
    return out


def train_cost(plan, run: str, policy_calls_max: int, rates: dict) -> dict:
    """A run's training: its samples, how its evaluation's model work compares, and its hours at
    ``eval.rates.train_step_s`` (when measured)."""
    t = plan.runs[run]["train"]
    samples = t["max_steps"] * plan.resolved_train(run)["effective_batch_size"]
    # model work: a training sample costs one forward and one backward pass (about 3 forward passes) of the
    # transformer; a policy call 5 forward passes (the denoising steps); both one vision-encoder pass. So
    # evaluation / training model work <= (5 x calls) / (3 x samples), whatever the encoder costs.
    out = {
        "max_steps": t["max_steps"],
        "samples": samples,
        "gpus": t["gpus"],
        "model_work_ratio_max": round(5 * policy_calls_max / (3 * samples), 4),
    }
    if rates.get("train_step_s"):
        hours = t["max_steps"] * rates["train_step_s"] / 3600
        out["hours"] = round(hours, 2)
        out["gpu_hours"] = round(hours * max(t["gpus"], 1), 2)
    return out


# ============================================================================================ the printed table
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


def cost_lines(plan, target: str, cost: dict | None = None) -> list[str]:
    """The cost table of one target, as `python -m rdt plan` prints it (the report shows the same numbers)."""
    c = cost or plan.eval_cost(target)
    steps = c["steps"]
    eps = {int(k): v for k, v in c["episodes_per_task"].items()}
    final = steps[-1]
    inter = sorted({v for s, v in eps.items() if s != final})
    kind = plan.kind(target)
    head = f"{kind} {target}: {len(steps)} checkpoint(s) evaluated"
    if isinstance(plan.target(target), Run):
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
