# Text-encoder embeddings, computed once. Training language: every instruction of a training dataset, per
# (dataset, encoder) and nothing else, so no evaluation setting feeds training. Evaluation language: the
# instructions of the evaluated tasks, per (suite, tasks, encoder), for runs and evaluation-only checkpoints alike.


rule encode:
    input:
        data=lambda w: layout.data_file(RESULTS, PLAN.language[w.key]["data"]),
    output:
        layout.language_file(RESULTS, "{key}"),
    params:
        encoder=lambda w: PLAN.language[w.key]["text_encoder"],
        code=CODE["encode"],
    log:
        layout.log_file(RESULTS, "encode", "{key}"),
    benchmark:
        layout.benchmark_file(RESULTS, "encode", "{key}")
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt encode --data {input.data} --text-encoder {params.encoder} --out {output} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule encode --log {log} --mem-mb {resources.mem_mb}"


rule encode_tasks:
    output:
        layout.task_language_file(RESULTS, "{key}"),
    params:
        suite=lambda w: PLAN.task_language[w.key]["suite"],
        tasks=lambda w: PLAN.task_language[w.key]["tasks"],
        encoder=lambda w: PLAN.task_language[w.key]["text_encoder"],
        code=CODE["encode"],
    log:
        layout.log_file(RESULTS, "encode_tasks", "{key}"),
    benchmark:
        layout.benchmark_file(RESULTS, "encode_tasks", "{key}")
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt encode --instructions-from-tasks {params.suite} {params.tasks:q}"
        " --text-encoder {params.encoder} --out {output} > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule encode_tasks --log {log} --mem-mb {resources.mem_mb}"
