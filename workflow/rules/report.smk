# The report: figures and tables over every run and evaluation-only checkpoint, registered for `snakemake --report`.


# settings.json lists the target's evaluations by their identity-named summaries; written after them, so a new
# summary (a changed setting, checkpoint or code) is newer than it and it is written again, with or without
# Snakemake's .snakemake/ metadata.
rule target_settings:
    input:
        lambda w: PLAN.summaries(w.target),
    output:
        f"{RESULTS}/{{target}}/settings.json",
    params:
        settings=lambda w: PLAN.settings_document(w.target),
    log:
        f"{RESULTS}/logs/target_settings/{{target}}.log",
    localrule: True
    run:
        write_settings(output[0], params.settings)
        write_text(log[0], f"wrote {output[0]}\n")


rule report:
    input:
        summaries=PLAN.all_summaries(),
        settings=expand(f"{RESULTS}/{{target}}/settings.json", target=TARGETS),
    output:
        summary=report(
            f"{RESULTS}/report/summary.html",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        success=report(
            f"{RESULTS}/report/success_vs_step.png",
            caption="../report/success_vs_step.rst",
            category="1. Success rate",
        ),
        heatmap_last=report(
            f"{RESULTS}/report/heatmap_last.png",
            caption="../report/heatmap.rst",
            category="2. Per task",
            labels={"checkpoint": "last"},
        ),
        heatmap_best=report(
            f"{RESULTS}/report/heatmap_best.png",
            caption="../report/heatmap.rst",
            category="2. Per task",
            labels={"checkpoint": "best"},
        ),
        training=report(
            f"{RESULTS}/report/training.png",
            caption="../report/training.rst",
            category="3. Training",
        ),
        results=report(
            f"{RESULTS}/report/results.csv",
            caption="../report/results.rst",
            category="4. Tables",
            labels={"table": "results"},
        ),
        audit=report(
            f"{RESULTS}/report/audit.csv",
            caption="../report/audit.rst",
            category="4. Tables",
            labels={"table": "configuration audit"},
        ),
        provenance=report(
            f"{RESULTS}/report/provenance.json",
            caption="../report/provenance.rst",
            category="6. Provenance",
        ),
        rollouts=report(
            f"{RESULTS}/report/rollouts.png",
            caption="../report/rollouts.rst",
            category="5. Rollouts",
        ),
        videos=report(
            directory(f"{RESULTS}/report/videos"),
            patterns=["{name}.mp4"],
            caption="../report/rollouts.rst",
            category="5. Rollouts",
        ),
    params:
        folders=PLAN.report_folders(),
        out=lambda w, output: str(Path(output.results).parent),
        videos=config["report"]["videos"],
        code=CODE["report"],
    log:
        f"{RESULTS}/logs/report/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/report.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt report --results {params.folders:q} --videos {params.videos} --out {params.out}"
        " > {log} 2>&1"
