# Text-encoder embeddings of every instruction of a training dataset and of the evaluated tasks, computed once per
# (dataset, evaluated tasks, encoder).


rule encode:
    input:
        data=lambda w: f"{RESULTS}/cache/data/{LANGUAGE[w.key]['data']}/data.h5",
    output:
        f"{RESULTS}/cache/language/{{key}}/lang.safetensors",
    params:
        encoder=lambda w: LANGUAGE[w.key]["text_encoder"],
        eval_suite=lambda w: LANGUAGE[w.key]["eval_suite"],
        eval_tasks=lambda w: LANGUAGE[w.key]["eval_tasks"],
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
        "python -m rdt encode --data {input.data} --instructions-from-tasks {params.eval_suite} {params.eval_tasks:q}"
        " --text-encoder {params.encoder} --out {output} > {log} 2>&1"


rule encode_tasks:
    output:
        f"{RESULTS}/cache/language/{{key}}/tasks.safetensors",
    params:
        suite=lambda w: TASK_LANGUAGE[w.key]["suite"],
        tasks=lambda w: TASK_LANGUAGE[w.key]["tasks"],
        encoder=lambda w: TASK_LANGUAGE[w.key]["text_encoder"],
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
