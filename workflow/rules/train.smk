# Training in segments, one folder per training (results/train/<key>, shared by the runs that differ only in their
# evaluation). The job for step S continues the export of the previous segment end (its declared input, checked to
# come from the same training identity) and exports the checkpoint of step S, which evaluation picks up while
# later segments train. params.identity is the training identity (settings and training code, rdt.plan): the
# trainer computes the same identity and never resumes or re-exports a checkpoint of another one.


# run.yaml is written again when its key marker is new: a bookkeeping key changed, or the results folder moved (its
# paths), also without Snakemake's metadata; the trainer's identity is of the files, not of their paths.
rule run_marker:
    output:
        layout.run_marker(layout.train_dir(RESULTS, "{key}"), "{marker}"),
    log:
        layout.log_file(RESULTS, "run_marker", layout.job_name("{key}", "{marker}")),
    localrule: True
    run:
        write_marker(output[0])
        write_text(log[0], f"wrote {output[0]}\n")


rule run_config:
    input:
        marker=lambda w: PLAN.run_marker(w.key),
    output:
        layout.run_config(layout.train_dir(RESULTS, "{key}")),
    params:
        settings=lambda w: PLAN.train_settings(train_run(w)),
    log:
        layout.log_file(RESULTS, "run_config", "{key}"),
    localrule: True
    run:
        write_text(output[0], train_config.dump(params.settings))
        write_text(log[0], f"wrote {output[0]}\n")


rule train:
    input:
        # bookkeeping keys (log_period, checkpoints_total_limit, ...) rewrite run.yaml without retraining; what
        # decides the weights is params.identity
        config=ancient(layout.run_config(layout.train_dir(RESULTS, "{key}"))),
        data=lambda w: PLAN.data_path(train_run(w)),
        stats=lambda w: PLAN.stats_path(train_run(w)),
        lang=lambda w: PLAN.language_path(train_run(w)),
        previous=previous_export,
    output:
        directory(layout.export_dir(layout.train_dir(RESULTS, "{key}"), "{step}")),
    params:
        out=lambda w, output: str(Path(output[0]).parent.parent),
        identity=lambda w: PLAN.train_identity(train_run(w)),
        previous=lambda w, input: f"--previous-export {input.previous}" if input.previous else "",
        # one process per GPU; several processes need --multi_gpu (without it accelerate starts only one)
        processes=lambda w, resources: (
            f"--multi_gpu --num_processes {resources.gpu}" if resources.gpu > 1 else "--num_processes 1"
        ),
        precision=launch_precision,
    log:
        layout.log_file(RESULTS, "train", "{key}", layout.step_name("{step}")),
    benchmark:
        layout.benchmark_file(RESULTS, "train", "{key}", layout.step_name("{step}"))
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        nodes=1,
        gpu=lambda w: PLAN.train_gpus(w.key),
    conda:
        "../envs/rdt.yaml"
    shell:
        "accelerate launch --num_machines 1 {params.processes} --mixed_precision {params.precision}"
        " --dynamo_backend no -m rdt train --config {input.config} --until-step {wildcards.step}"
        " {params.previous} --out {params.out} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule train --log {log} --mem-mb {resources.mem_mb}"
