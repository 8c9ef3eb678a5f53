# The report: figures and tables over every run and evaluation-only checkpoint, registered for `snakemake --report`.


# settings.json lists the target's evaluations by their identity-named summaries; written after them and after the
# marker named by its document's key, so a changed document is a new marker, newer than it (a setting changed back
# too: only the current marker is kept), and it is written again, and then the report, with or without Snakemake's
# .snakemake/ metadata.
rule settings_marker:
    output:
        layout.settings_marker(layout.run_dir(RESULTS, "{target}"), "{key}"),
    log:
        layout.log_file(RESULTS, "settings_marker", layout.job_name("{target}", "{key}")),
    localrule: True
    run:
        write_marker(output[0])
        write_text(log[0], f"wrote {output[0]}\n")


rule report_marker:
    output:
        layout.report_marker(RESULTS, "{key}"),
    log:
        layout.log_file(RESULTS, "report_marker", "{key}"),
    localrule: True
    run:
        write_marker(output[0])
        write_text(log[0], f"wrote {output[0]}\n")


rule target_settings:
    input:
        summaries=lambda w: PLAN.summaries(w.target),
        marker=lambda w: PLAN.settings_marker(w.target),
    output:
        layout.settings_file(layout.run_dir(RESULTS, "{target}")),
    params:
        settings=lambda w: PLAN.settings_document(w.target),
    log:
        layout.log_file(RESULTS, "target_settings", "{target}"),
    localrule: True
    run:
        write_settings(output[0], params.settings)
        write_text(log[0], f"wrote {output[0]}\n")


rule report:
    input:
        summaries=lambda w: PLAN.all_summaries(),
        settings=[PLAN.settings_path(t) for t in TARGETS],
        marker=PLAN.report_marker(),  # its targets, settings and code
    output:
        # the report folder's files: rdt/report/names.py (report_files) names them, so a figure added there is
        # declared here too, under its name without .png (success_vs_step, heatmap_last, ...)
        summary=report(
            layout.report_file(RESULTS, report_files.SUMMARY),
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        **{
            figure.key: report(
                layout.report_file(RESULTS, figure.file),
                caption=f"../report/{figure.rst}",
                category=figure.category,
                labels=figure.labels,
            )
            for figure in report_files.FIGURES
        },
        results=report(
            layout.report_file(RESULTS, report_files.RESULTS_TABLE),
            caption="../report/results.rst",
            category="4. Tables",
            labels={"table": "results"},
        ),
        audit=report(
            layout.report_file(RESULTS, report_files.AUDIT_TABLE),
            caption="../report/audit.rst",
            category="4. Tables",
            labels={"table": "configuration audit"},
        ),
        provenance=report(
            layout.report_file(RESULTS, report_files.PROVENANCE),
            caption="../report/provenance.rst",
            category="6. Provenance",
        ),
        videos=report(
            directory(layout.report_file(RESULTS, report_files.VIDEOS)),
            patterns=["{name}.mp4"],
            caption="../report/rollouts.rst",
            category="5. Rollouts",
        ),
    params:
        folders=PLAN.report_folders(),
        out=lambda w, output: str(Path(output.results).parent),
        videos=PLAN.config["report"]["videos"],  # validated, with the schema's default
        code=CODE["report"],
    log:
        layout.log_file(RESULTS, "report", "report"),
    benchmark:
        layout.benchmark_file(RESULTS, "report", "report")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rdt.yaml"
    shell:
        "python -m rdt report --results {params.folders:q} --videos {params.videos} --out {params.out}"
        " > {log} 2>&1"
        " || python -m rdt.job_exit $? --rule report --log {log} --mem-mb {resources.mem_mb}"
