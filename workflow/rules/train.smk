# Training in segments: the job for step S resumes the run's state left by the job for the previous segment end
# and exports the checkpoint of step S, which evaluation picks up while later segments train.


rule run_config:
    output:
        f"{RESULTS}/{{run}}/train/run.yaml",
    params:
        settings=lambda w: train_settings(w.run),
    log:
        f"{RESULTS}/logs/run_config/{{run}}.log",
    localrule: True
    run:
        write_text(output[0], yaml.safe_dump(params.settings, sort_keys=False))
        write_text(log[0], f"wrote {output[0]}\n")


rule train:
    input:
        config=f"{RESULTS}/{{run}}/train/run.yaml",
        data=lambda w: data_path(w.run),
        stats=lambda w: stats_path(w.run),
        lang=lambda w: language_path(w.run),
        previous=previous_export,
    output:
        directory(f"{RESULTS}/{{run}}/train/export/step-{{step}}"),
    params:
        out=lambda w, output: str(Path(output[0]).parent.parent),
        settings=lambda w: train_settings(w.run),
        # one process per GPU; several processes need --multi_gpu (without it accelerate starts only one)
        processes=lambda w, resources: (
            f"--multi_gpu --num_processes {resources.gpu}" if resources.gpu > 1 else "--num_processes 1"
        ),
        code=CODE["train"],
    log:
        f"{RESULTS}/logs/train/{{run}}/step-{{step}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}/step-{{step}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        nodes=1,
        gpu=lambda w: RUNS[w.run]["train"]["gpus"],
    conda:
        "../envs/rdt.yaml"
    shell:
        "accelerate launch --num_machines 1 {params.processes}"
        " --dynamo_backend no -m rdt train --config {input.config} --until-step {wildcards.step}"
        " --out {params.out} > {log} 2>&1"
