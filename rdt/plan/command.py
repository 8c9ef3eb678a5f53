"""For every target of the config (its runs, replay runs and evaluation-only checkpoints, or those given with
--target): which checkpoints are evaluated (the evaluation budget: eval.checkpoints, intermediate_episodes_per_task,
intermediate_horizons) and, per execution horizon, the evaluation jobs, the episodes and upper bounds of simulator
steps and policy calls (every episode runs to the step limit), with hours at the rates of eval.rates (seconds per
simulator step, per episode and per policy call; a null policy_call_s leaves the policy out of the hours). For a
run also its training's samples, how its evaluation's model work compares with the training's, device hours (GPU
hours, or CPU hours with gpus: 0) and the most disk its training folder takes.

With --profile DIR (a Snakemake profile folder such as slurm/), each job's CPUs, memory and runtime as the profile
requests them, against what the settings need; a request below the need is marked with **.

The config is read as the workflow reads it (the schema's defaults filled in, its numbers checked), without looking
for the files it names. The same numbers are in each target's settings document (eval_plan) and in the report.
"""

from __future__ import annotations

from rdt.errors import UserError
from rdt.plan.core import Plan
from rdt.plan.cost import cost_lines


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
