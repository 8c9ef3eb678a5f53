import re

from rdt.plan import REPLAY_HORIZON, REPLAY_STEP


# One job per (checkpoint, execution horizon): LIBERO rollouts with receding-horizon control.
# episodes.jsonl (next to summary.json) is deliberately not a declared output: Snakemake deletes the outputs of a
# job before running it again, and the evaluator resumes a killed job from the episodes already recorded there.
# Each record carries a key of what decides its outcome (settings, the checkpoint's identity from its pipeline.json
# or the hash of its weights, the evaluation code, the task's instruction embedding): records of a retrained model,
# other settings or other code run again. A run's statistics come from its export's pipeline.json; --stats only
# for evaluation-only checkpoints that configure them.


rule evaluate:
    input:
        checkpoint=checkpoint_input,
        lang=lambda w: PLAN.task_language_path(w.target),
        stats=lambda w: PLAN.eval_stats(w.target),
    output:
        summary=layout.summary_path(f"{RESULTS}/{{target}}", "{step}", "{horizon}", "{key}"),
    wildcard_constraints:
        target="|".join(map(re.escape, EVALUATED)) or "(?!)",
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        name=lambda w, output: Path(output.summary).name,
        checkpoint=lambda w: PLAN.checkpoint_ref(w.target, int(w.step)),
        checkpoint_flags=lambda w: PLAN.checkpoint_flags(w.target),
        settings=lambda w: PLAN.eval_settings(w.target, int(w.step)),
        stats=lambda w, input: f"--stats {input.stats}" if input.stats else "",
        tasks=lambda w: PLAN.eval_settings(w.target)["tasks"],
        max_steps=lambda w: (
            f"--max-steps {PLAN.eval_settings(w.target)['max_steps']}"
            if PLAN.eval_settings(w.target)["max_steps"]
            else ""
        ),
        code=CODE["evaluate"],
        # success per checkpoint and horizon beside the training curves (tensorboard --logdir results)
        tensorboard=lambda w: (
            f"--tensorboard {PLAN.train_dir(w.target)}/tensorboard/eval-{w.target}" if w.target in PLAN.runs else ""
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{target}}/step-{{step}}-h{{horizon}}-{{key}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{target}}/step-{{step}}-h{{horizon}}-{{key}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: PLAN.eval_gpus(w.target),
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt evaluate --checkpoint {params.checkpoint} {params.checkpoint_flags} --lang {input.lang}"
        " {params.stats}"
        " --horizon {wildcards.horizon} --suite {params.settings[suite]} --tasks {params.tasks:q}"
        " --episodes {params.settings[episodes_per_task]} {params.max_steps} --envs {threads}"
        " --seed {params.settings[seed]} --videos-per-task {params.settings[videos_per_task]}"
        " {params.tensorboard}"
        " --out {params.out} --summary-name {params.name} > {log} 2>&1"


# Replay runs (runs.<name>.kind: replay): the run's demos replayed open-loop on the evaluation's (task, init state,
# seed) pairs and step limit; no model, step 0, horizon 0 (open loop). The floor every policy is compared with.
rule replay:
    input:
        demos=lambda w: PLAN.replay_settings(w.target)["demos"],
    output:
        summary=layout.summary_path(f"{RESULTS}/{{target}}", REPLAY_STEP, REPLAY_HORIZON, "{key}"),
    wildcard_constraints:
        target="|".join(map(re.escape, REPLAYS)) or "(?!)",
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        name=lambda w, output: Path(output.summary).name,
        settings=lambda w: PLAN.replay_settings(w.target),
        tasks=lambda w: PLAN.replay_settings(w.target)["tasks"],
        demos_per_task=lambda w: (
            f"--demos-per-task {PLAN.replay_settings(w.target)['demos_per_task']}"
            if PLAN.replay_settings(w.target)["demos_per_task"]
            else ""
        ),
        max_steps=lambda w: (
            f"--max-steps {PLAN.replay_settings(w.target)['max_steps']}"
            if PLAN.replay_settings(w.target)["max_steps"]
            else ""
        ),
        code=CODE["replay"],
    log:
        f"{RESULTS}/logs/replay/{{target}}-{{key}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/replay/{{target}}-{{key}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt replay --demos {input.demos} {params.demos_per_task} --suite {params.settings[suite]}"
        " --tasks {params.tasks:q} --episodes {params.settings[episodes_per_task]} {params.max_steps}"
        " --envs {threads} --seed {params.settings[seed]} --videos-per-task {params.settings[videos_per_task]}"
        " --out {params.out} --summary-name {params.name} > {log} 2>&1"
