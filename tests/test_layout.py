"""rdt/layout.py builds every results path: its functions give the documented paths (``str`` in, ``str`` out, also
for Snakemake wildcard patterns; ``Path`` in, ``Path`` out), and no results path is spelt as a literal anywhere else
in the code of rdt/, workflow/ or scripts/ (comments and docstrings may name them)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from rdt import layout

REPO = Path(__file__).resolve().parents[1]

#: (function, its arguments after the base folder, the path under the base folder "R") as the module docstring draws
DOCUMENTED = [
    (layout.cache_dir, ("demos",), "cache/demos"),
    (layout.demos_dir, ("k",), "cache/demos/k"),
    (layout.data_dir, ("k",), "cache/data/k"),
    (layout.data_file, ("k",), "cache/data/k/data.h5"),
    (layout.stats_file, ("k",), "cache/data/k/dataset_stat.json"),
    (layout.language_dir, ("k",), "cache/language/k"),
    (layout.language_file, ("k",), "cache/language/k/lang.safetensors"),
    (layout.task_language_file, ("k",), "cache/language/k/tasks.safetensors"),
    (layout.train_dir, ("k",), "train/k"),
    (layout.run_config, (), "run.yaml"),
    (layout.export_dir, (20,), "export/step-20"),
    (layout.run_dir, ("main",), "main"),
    (layout.settings_file, (), "settings.json"),
    (layout.run_marker, ("k",), ".run-k"),
    (layout.settings_marker, ("k",), ".settings-k"),
    (layout.report_marker, ("k",), ".report-k"),
    (layout.own_train_dir, (), "train"),
    (layout.eval_dir, (20, 8), "eval/step-20/h8"),
    (layout.summary_path, (20, 8, "e"), "eval/step-20/h8/summary-e.json"),
    (layout.summary_path, (20, 8), "eval/step-20/h8/summary.json"),
    (layout.eval_config_path, (20, 8, "e"), "eval/step-20/h8/eval-e.yaml"),
    (layout.report_dir, (), "report"),
    (layout.report_file, ("results.csv",), "report/results.csv"),
    (layout.logs_dir, (), "logs"),
    (layout.log_file, ("convert", "k"), "logs/convert/k.log"),
    (layout.log_file, ("train", "k", "step-20"), "logs/train/k/step-20.log"),
    (layout.benchmarks_dir, (), "benchmarks"),
    (layout.benchmark_file, ("report", "report"), "benchmarks/report/report.tsv"),
    (layout.benchmark_file, ("evaluate", "main", "step-20-h8-e"), "benchmarks/evaluate/main/step-20-h8-e.tsv"),
]


@pytest.mark.parametrize(("function", "args", "path"), DOCUMENTED, ids=lambda v: getattr(v, "__name__", None))
def test_documented_paths_for_str_and_path(function, args, path):
    got = function("R", *args)
    assert type(got) is str and got == f"R/{path}"
    assert function("results/study/", *args) == f"results/study/{path}"  # a trailing slash adds no empty part
    got = function(Path("R"), *args)
    assert isinstance(got, Path) and got == Path("R", path)


def test_nested_paths_and_snakemake_wildcard_patterns():
    """The paths the rules declare, built from wildcard patterns, are the paths of the plan's values."""
    assert layout.export_dir(layout.train_dir("results", "{key}"), "{step}") == "results/train/{key}/export/step-{step}"
    assert layout.run_config(layout.train_dir("results", "{key}")) == "results/train/{key}/run.yaml"
    assert layout.settings_file(layout.run_dir("results", "{target}")) == "results/{target}/settings.json"
    summary = layout.summary_path(layout.run_dir("results", "{target}"), "{step}", "{horizon}", "{key}")
    assert summary == "results/{target}/eval/step-{step}/h{horizon}/summary-{key}.json"
    job = layout.eval_job_name("{step}", "{horizon}", "{key}")
    assert job == "step-{step}-h{horizon}-{key}"
    assert layout.log_file("results", "evaluate", "{target}", job) == (
        "results/logs/evaluate/{target}/step-{step}-h{horizon}-{key}.log"
    )
    assert layout.benchmark_file("results", "replay", layout.job_name("{target}", "{key}")) == (
        "results/benchmarks/replay/{target}-{key}.tsv"
    )
    assert layout.log_file("results", "train", "{key}", layout.step_name("{step}")) == (
        "results/logs/train/{key}/step-{step}.log"
    )
    assert layout.summary_name() == layout.SUMMARY == "summary.json"


def test_the_docstring_draws_every_path_function():
    """The one tree in the module docstring names each path function next to the path it builds."""
    functions = {f.__name__ for f, _, _ in DOCUMENTED} - {"cache_dir", "data_dir", "language_dir", "own_train_dir"}
    functions -= {"logs_dir", "benchmarks_dir", "report_dir"}
    missing = [name for name in sorted(functions) if not re.search(rf"\s{name}\s", layout.__doc__)]
    assert not missing, f"rdt/layout.py's docstring tree does not name {missing}"


def test_reserved_target_names_are_the_top_level_folders():
    from rdt.plan.checks import RESERVED_NAMES

    assert set(RESERVED_NAMES) == {"cache", "train", "report", "logs", "benchmarks"}


# ---------------------------------------------------------------------------------------- no path literals elsewhere
#: results folders, as they appear inside a path, and results file names (as a whole string or a path's last part)
FOLDERS = ("cache", "train", "logs", "benchmarks")
#: results folders whose names the repository's own folders share (workflow/report/ captions: "../report/x.rst"),
#: caught where they continue a path built in code (f"{results}/report/...")
CONTINUED = ("report", "train")
FILES = (
    "settings.json",
    "run.yaml",
    "summary.json",
    "data.h5",
    "dataset_stat.json",
    "lang.safetensors",
    "tasks.safetensors",
)
#: a folder name standing alone as a path part (``results / "cache"``); "train" and "report" are also settings keys
#: and stage names, so they are caught inside paths only
PARTS = ("cache", "logs", "benchmarks")
#: the module that owns these names
OWNERS = {"rdt/layout.py"}
#: (file, literal) found and allowed: `rdt evaluate` without --lang encodes the instructions into its own --out folder
#: (not the results layout; the workflow always passes --lang)
ALLOWED = {("rdt/evaluation/command.py", "lang.safetensors")}


def is_path_literal(text: str) -> bool:
    """A piece of a string literal that spells a results path. Text with whitespace is prose (a message, a help
    text, an example command line), not a path."""
    if not text or any(c.isspace() for c in text):
        return False
    if text in PARTS or any(f"/{d}/" in text for d in FOLDERS):
        return True
    if any(text == f"/{d}" or text.startswith(f"/{d}/") for d in CONTINUED):
        return True
    return any(text == name or text.endswith(f"/{name}") for name in FILES)


def _pieces(tree: ast.AST, skip: set[int]) -> list[tuple[int, str]]:
    """(line, text) of every string constant and every literal part of an f-string, but those in ``skip``."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def python_literals(source: str) -> list[tuple[int, str]]:
    """The string pieces of Python code, docstrings (and other bare string statements) left out."""
    tree = ast.parse(source)
    skip = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return _pieces(tree, skip)


def snakemake_literals(source: str) -> list[tuple[int, str]]:
    """The string pieces of a Snakefile (Python tokens; comments are not strings)."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            for _, text in _pieces(ast.parse(tok.string.strip(), mode="eval"), set()):
                found.append((tok.start[0], text))
    return found


def path_literals(path: Path) -> list[str]:
    source = path.read_text()
    literals = python_literals(source) if path.suffix == ".py" else snakemake_literals(source)
    rel = str(path.relative_to(REPO))
    return [
        f"{rel}:{line}: {text!r}" for line, text in literals if is_path_literal(text) and (rel, text) not in ALLOWED
    ]


def code_files() -> list[Path]:
    files = [*REPO.glob("rdt/**/*.py"), *REPO.glob("scripts/*.py"), REPO / "workflow" / "Snakefile"]
    files += [*REPO.glob("workflow/**/*.smk"), *REPO.glob("workflow/**/*.py")]
    return sorted(f for f in files if str(f.relative_to(REPO)) not in OWNERS)


def test_no_results_path_literal_outside_the_layout():
    found = [hit for f in code_files() for hit in path_literals(f)]
    assert not found, "results paths spelt outside rdt/layout.py (build them with its functions):\n" + "\n".join(found)


def test_the_literal_check_finds_what_it_should(tmp_path):
    """The check can fail: path literals in code are found, in Python and in Snakemake rules; docstrings, comments
    and prose are not."""
    py = tmp_path / "m.py"
    py.write_text(
        '"""Writes results/cache/data/<key>/data.h5 and <target>/settings.json."""\n'
        "# results/logs/<rule>/<job>.log\n"
        "def f(results, key):\n"
        '    """results/train/<key>/run.yaml"""\n'
        '    print(f"{results}: no settings.json found")\n'
        '    a = f"{results}/cache/data/{key}/data.h5"\n'
        '    b = Path(results) / "settings.json"\n'
        '    c = results / "benchmarks"\n'
        '    d = f"{results}/report/{name}"\n'
        '    return f"{results}/logs/{key}.log", a, b, c, d\n'
    )
    smk = tmp_path / "rules.smk"
    smk.write_text(
        "# the training folder, results/train/<key>/run.yaml\n"
        "rule run_config:\n"
        "    output:\n"
        '        f"{RESULTS}/train/{{key}}/run.yaml",\n'
        "    log:\n"
        '        layout.log_file(RESULTS, "run_config", "{key}"),\n'
        "    shell:\n"
        '        "python -m rdt x --out {output} > {log} 2>&1"\n'
    )
    hits = [h.split(": ", 1)[1] for f in (py, smk) for h in _hits(f)]
    assert hits == [
        "'/cache/data/'",
        "'/data.h5'",
        "'settings.json'",
        "'benchmarks'",
        "'/report/'",
        "'/logs/'",
        "'/train/{key}/run.yaml'",
    ], hits


def _hits(path: Path) -> list[str]:
    source = path.read_text()
    literals = python_literals(source) if path.suffix == ".py" else snakemake_literals(source)
    return sorted(
        (f"{line}: {text!r}" for line, text in literals if is_path_literal(text)), key=lambda h: int(h.split(":")[0])
    )
