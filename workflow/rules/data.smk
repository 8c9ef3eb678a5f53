# Demo files -> one training HDF5 -> dataset statistics. Shared by every run with the same data settings.


rule convert:
    input:
        lambda w: PLAN.demos_input(PLAN.data[w.key]["demos"]),
    output:
        layout.data_file(RESULTS, "{key}"),
    params:
        suite=lambda w: PLAN.data[w.key]["suite"],
        tasks=lambda w: PLAN.data[w.key]["tasks"],
        per_task=lambda w: (
            f"--demos-per-task {PLAN.data[w.key]['demos_per_task']}" if PLAN.data[w.key]["demos_per_task"] else ""
        ),
        min_steps=lambda w: PLAN.data[w.key]["min_steps"],
        options=lambda w: " ".join(
            (["--source lerobot"] if PLAN.data[w.key]["demos"]["source"] == "lerobot" else [])
            + (["--drop-noops"] if PLAN.data[w.key].get("drop_noops") else [])
            + ([f"--image-size {PLAN.data[w.key]['image_size']}"] if PLAN.data[w.key].get("image_size") else [])
        ),
        code=CODE["convert"],
    log:
        layout.log_file(RESULTS, "convert", "{key}"),
    benchmark:
        layout.benchmark_file(RESULTS, "convert", "{key}")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt convert --demos {input:q} --suite {params.suite} --tasks {params.tasks:q}"
        " {params.per_task} --min-steps {params.min_steps} {params.options} --out {output} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule convert --log {log} --mem-mb {resources.mem_mb}"


rule stats:
    input:
        layout.data_file(RESULTS, "{key}"),
    output:
        layout.stats_file(RESULTS, "{key}"),
    params:
        code=CODE["stats"],
    log:
        layout.log_file(RESULTS, "stats", "{key}"),
    benchmark:
        layout.benchmark_file(RESULTS, "stats", "{key}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt stats --data {input} --out {output} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule stats --log {log} --mem-mb {resources.mem_mb}"
