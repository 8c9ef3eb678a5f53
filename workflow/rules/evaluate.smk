import re

from rdt.plan import REPLAY_HORIZON, REPLAY_STEP


# One job per (checkpoint, execution horizon): LIBERO rollouts with receding-horizon control.
# episodes.jsonl (next to summary.json) is deliberately not a declared output: Snakemake deletes the outputs of a
# job before running it again, and the evaluator resumes a killed job from the episodes already recorded there.
# Each record carries a key of what decides its outcome (settings, the checkpoint's identity from its pipeline.json
# or the hash of its weights, the evaluation code, the task's instruction embedding): records of a retrained model,
# other settings or other code run again. A run's statistics come from its export's pipeline.json; stats only
# for evaluation-only checkpoints that configure them.
# The job's settings are a document beside its summary (eval-<key>.yaml, rdt/evaluation/config.py), written by the
# plan like run.yaml for training: `rdt evaluate --config` reads it; only the job's threads (--envs) and the output
# names are flags.


rule eval_config:
    output:
        layout.eval_config_path(layout.run_dir(RESULTS, "{target}"), "{step}", "{horizon}", "{key}"),
    wildcard_constraints:
        target="|".join(map(re.escape, EVALUATED)) or "(?!)",
    params:
        settings=lambda w: PLAN.eval_config(w.target, int(w.step), int(w.horizon)),
    log:
        layout.log_file(RESULTS, "eval_config", "{target}", layout.eval_job_name("{step}", "{horizon}", "{key}")),
    localrule: True
    run:
        from rdt.evaluation import config as eval_config

        write_text(output[0], eval_config.dump(params.settings))
        write_text(log[0], f"wrote {output[0]}\n")


rule evaluate:
    input:
        # the key in its name is the request's identity; what else the document says (where success is logged,
        # the paths of the same inputs) rewrites it without evaluating again
        config=ancient(
            layout.eval_config_path(layout.run_dir(RESULTS, "{target}"), "{step}", "{horizon}", "{key}")
        ),
        checkpoint=checkpoint_input,
        lang=lambda w: PLAN.task_language_path(w.target),
        stats=lambda w: PLAN.eval_stats(w.target),
    output:
        summary=layout.summary_path(layout.run_dir(RESULTS, "{target}"), "{step}", "{horizon}", "{key}"),
    wildcard_constraints:
        target="|".join(map(re.escape, EVALUATED)) or "(?!)",
    params:
        out=lambda w, output: str(Path(output.summary).parent),
        name=lambda w, output: Path(output.summary).name,
        code=CODE["evaluate"],
    log:
        layout.log_file(RESULTS, "evaluate", "{target}", layout.eval_job_name("{step}", "{horizon}", "{key}")),
    benchmark:
        layout.benchmark_file(RESULTS, "evaluate", "{target}", layout.eval_job_name("{step}", "{horizon}", "{key}"))
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: PLAN.eval_gpus(w.target),
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt evaluate --config {input.config} --envs {threads}"
        " --out {params.out} --summary-name {params.name} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule evaluate --log {log} --mem-mb {resources.mem_mb}"


# Replay runs (runs.<name>.kind: replay): the run's demos replayed open-loop on the evaluation's (task, init state,
# seed) pairs and step limit; no model, step 0, horizon 0 (open loop). The floor every policy is compared with.
rule replay:
    input:
        demos=lambda w: PLAN.replay_settings(w.target)["demos"],
    output:
        summary=layout.summary_path(layout.run_dir(RESULTS, "{target}"), REPLAY_STEP, REPLAY_HORIZON, "{key}"),
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
        layout.log_file(RESULTS, "replay", layout.job_name("{target}", "{key}")),
    benchmark:
        layout.benchmark_file(RESULTS, "replay", layout.job_name("{target}", "{key}"))
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
        " || python -m rdt.job_exit $? --rule replay --log {log} --mem-mb {resources.mem_mb}"
