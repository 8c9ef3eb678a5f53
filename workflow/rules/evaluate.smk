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
        summary=layout.summary_path(f"{RESULTS}/{{target}}", "{step}", "{horizon}"),
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        settings=lambda w: PLAN.eval_settings(w.target, int(w.step)),
        stats=lambda w, input: f"--stats {input.stats}" if input.stats else "",
        tasks=lambda w: PLAN.eval_settings(w.target)["tasks"],
        max_steps=lambda w: (
            f"--max-steps {PLAN.eval_settings(w.target)['max_steps']}"
            if PLAN.eval_settings(w.target)["max_steps"]
            else ""
        ),
        code=CODE["evaluate"],
    log:
        f"{RESULTS}/logs/evaluate/{{target}}/step-{{step}}-h{{horizon}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{target}}/step-{{step}}-h{{horizon}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: PLAN.eval_gpus(w.target),
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt evaluate --checkpoint {input.checkpoint} --lang {input.lang} {params.stats}"
        " --horizon {wildcards.horizon} --suite {params.settings[suite]} --tasks {params.tasks:q}"
        " --episodes {params.settings[episodes_per_task]} {params.max_steps} --envs {threads}"
        " --seed {params.settings[seed]} --videos-per-task {params.settings[videos_per_task]}"
        " --weights {params.settings[weights]}"
        " --out {params.out} > {log} 2>&1"
