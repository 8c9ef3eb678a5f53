# Text-encoder embeddings, computed once. Training language: every instruction of a training dataset, per
# (dataset, encoder) and nothing else, so no evaluation setting feeds training. Evaluation language: the
# instructions of the evaluated tasks, per (suite, tasks, encoder), for runs and evaluation-only checkpoints alike.


rule encode:
    input:
        data=lambda w: f"{RESULTS}/cache/data/{PLAN.language[w.key]['data']}/data.h5",
    output:
        f"{RESULTS}/cache/language/{{key}}/lang.safetensors",
    params:
        encoder=lambda w: PLAN.language[w.key]["text_encoder"],
        code=CODE["encode"],
    log:
        f"{RESULTS}/logs/encode/{{key}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode/{{key}}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt encode --data {input.data} --text-encoder {params.encoder} --out {output} > {log} 2>&1"


rule encode_tasks:
    output:
        f"{RESULTS}/cache/language/{{key}}/tasks.safetensors",
    params:
        suite=lambda w: PLAN.task_language[w.key]["suite"],
        tasks=lambda w: PLAN.task_language[w.key]["tasks"],
        encoder=lambda w: PLAN.task_language[w.key]["text_encoder"],
        code=CODE["encode"],
    log:
        f"{RESULTS}/logs/encode_tasks/{{key}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode_tasks/{{key}}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt encode --instructions-from-tasks {params.suite} {params.tasks:q}"
        " --text-encoder {params.encoder} --out {output} > {log} 2>&1"
