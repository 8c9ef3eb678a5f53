"""The report of a set of runs (``python -m rdt report``): what the workflow's report rule writes and
``snakemake --report`` shows.

- names.py: the report folder's file names and its figures, in one place (the workflow imports it too)
- collect.py: reading the runs (Run, Result: settings, metrics, the listed evaluations and their records)
- tables.py: results.csv, audit.csv (rows from rdt/audit.py) and provenance.json
- compare.py: the paired comparisons (statistics: rdt/report_stats.py), also quoted by rdt/bundle.py
- figures.py: the matplotlib figures
- markup.py and page.py: the summary page (summary.html)
- command.py: the command (its options and help) that writes the report folder
"""
