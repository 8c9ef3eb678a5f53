"""The Snakemake workflow: lint, schema validation at start, the DAG, run sharing, evaluation-only mode, and exact
reruns proved on the outputs of a real run of a tiny configuration (in a copy of the repository in tmp, so that
code edits can be made there)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from rdt.plan import Plan
from rdt.report.names import AUDIT_TABLE, FIGURES, PROVENANCE, RESULTS_TABLE, SUMMARY
from workflow_helpers import (
    REPO,
    SNAKEMAKE,
    TASK,
    copy_repo,
    current_summary,
    env_for,
    plan_summary,
    planned_jobs,
    snakemake,
    variant,
)

TASK2 = "pick_up_the_cream_cheese_and_place_it_in_the_basket"


# ---------------------------------------------------------------------------------------------------- static
def test_lint_reports_nothing():
    proc = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, env=env_for(REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda c: c["train"].update(lerning_rate=1e-3), "lerning_rate"),
        (lambda c: c["runs"].update(fast={"train": {"learning_rate": "high"}}), "runs.fast"),
    ],
)
def test_schema_errors_fail_before_any_job_and_name_the_key(workdir, change, named):
    proc = snakemake(workdir, "--configfile", variant(workdir, "bad", change), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert named in out, out[-3000:]
    assert "Job stats" not in out and not (workdir / "results").exists()


def test_command_line_overrides_with_numbers_work(workdir):
    # --config parses nested values with YAML's BaseLoader: every number arrives as a string
    jobs = planned_jobs(workdir, "--config", "train={max_steps: 6, learning_rate: 3e-4}", "eval={exec_horizons: [8]}")
    assert jobs["train"] == 3 and jobs["evaluate"] == 3


@pytest.mark.sim
@pytest.mark.slow
def test_switching_to_a_config_whose_demo_folder_is_missing_names_it(tiny_run, tmp_path):
    # after a finished run (old targets exist) as in a clean clone: the missing folder is named at parse time
    paper = str(REPO / "config" / "rdt1b_libero90.yaml")
    for where in (tiny_run, copy_repo(tmp_path)):
        proc = snakemake(where, "-n", "--configfile", paper, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "Nothing to be done" not in out
        assert "demos.folder 'data/libero/libero_90' does not exist" in out, out[-2000:]


def test_every_rule_has_log_benchmark_and_resources(workdir):
    text = "\n".join(p.read_text() for p in (workdir / "workflow" / "rules").glob("*.smk"))
    rules = re.split(r"^(?:rule|checkpoint) ", text, flags=re.M)[1:]
    assert len(rules) >= 9
    for rule in rules:
        name = rule.split(":", 1)[0]
        assert "    log:" in rule, name
        if "localrule: True" not in rule:
            assert "    benchmark:" in rule and "mem_mb=" in rule and "runtime=" in rule, name
            assert "    threads:" in rule and "    conda:" in rule, name


# ---------------------------------------------------------------------------------------------------- the DAG
def test_dag_of_the_tiny_config(workdir):
    jobs = planned_jobs(workdir)
    assert jobs == {
        "expert_demos": 1,
        "convert": 1,
        "stats": 1,
        "encode": 1,
        "encode_tasks": 1,
        "run_config": 1,
        "run_marker": 1,
        "train": 2,
        "eval_config": 6,
        "evaluate": 6,
        "target_settings": 1,
        "settings_marker": 1,
        "report_marker": 1,
        "report": 1,
        "all": 1,
    }


def test_evaluation_only_mode(workdir, tmp_path):
    ckpt = tmp_path / "released" / "checkpoint-19000"
    ckpt.mkdir(parents=True)
    (ckpt / "pipeline.json").write_text('{"text_encoder": "tiny", "step": 19000}')

    def evaluate_only(cfg):
        cfg["runs"] = {}
        cfg["evaluate_checkpoints"] = [{"name": "seed_current", "path": str(ckpt), "step": 19000}]

    jobs = planned_jobs(workdir, "--configfile", variant(workdir, "evalonly", evaluate_only))
    assert jobs == {
        "encode_tasks": 1,
        "eval_config": 3,
        "evaluate": 3,
        "target_settings": 1,
        "settings_marker": 1,
        "report_marker": 1,
        "report": 1,
        "all": 1,
    }
    config = variant(workdir, "evalonly", evaluate_only)
    proc = snakemake(workdir, "--configfile", config, "-n", "-p")
    assert "--config results/seed_current/eval/step-19000/h16/eval-" in proc.stdout
    plan = Plan(yaml.safe_load(Path(config).read_text()), base_dir=workdir)
    assert plan.eval_config("seed_current", 19000, 16)["checkpoint"] == str(ckpt)  # what the document says


def test_training_launches_accelerate_with_the_configured_gpus(workdir):
    def gpus(cfg):
        cfg["train"].update(gpus=4, effective_batch_size=8)

    config = variant(workdir, "gpus", gpus)
    proc = snakemake(workdir, "--configfile", config, "-n", "-p", plan_summary(Path(config), "default", 4, 8))
    assert "accelerate launch --num_machines 1 --multi_gpu --num_processes 4 " in proc.stdout
    assert re.search(r"rule train:.*?resources: [^\n]*gpu=4", proc.stdout, flags=re.S)
    proc = snakemake(workdir, "-n", "-p", plan_summary(None, "default", 4, 8))  # CPU: one process
    assert "accelerate launch --num_machines 1 --num_processes 1 " in proc.stdout
    # the segment of step 4 continues the export of step 2 of the same training: declared and passed
    key = re.search(r"results/train/([0-9a-f]{12})/export/step-4", proc.stdout).group(1)
    assert f"--until-step 4 --previous-export results/train/{key}/export/step-2 " in proc.stdout
    assert re.search(r"--until-step 2 +--out", proc.stdout)  # the first segment continues nothing


# ---------------------------------------------------------------------------------------------------- reruns
@pytest.mark.sim
@pytest.mark.slow
def test_tiny_run_produces_every_output(tiny_run):
    results = tiny_run / "results"
    settings = json.loads((results / "default" / "settings.json").read_text())
    train_dir = (results / "default" / settings["train_folder"]).resolve()
    assert train_dir.parent == (results / "train").resolve() and (train_dir / "metrics.csv").is_file()
    for step in (2, 4):
        export = train_dir / "export" / f"step-{step}"
        assert (export / "model.safetensors").is_file()
        assert json.loads((export / "pipeline.json").read_text())["identity"]
        for h in (8, 16, 64):
            assert current_summary(results / "default", step, h).is_file()
    for name in [*(f.file for f in FIGURES), SUMMARY, RESULTS_TABLE, AUDIT_TABLE, PROVENANCE]:
        assert (results / "report" / name).stat().st_size > 0, name
    assert planned_jobs(tiny_run) == {}
    snakemake(tiny_run, "--report", "results/report.html")
    html = (results / "report.html").read_text()
    for caption in (
        "Success rate of each run versus training step",
        "Configuration audit",
        "Provenance",
        *(f.file for f in FIGURES),
        AUDIT_TABLE,
    ):
        assert caption in html, caption
    assert len(html) > 100_000  # figures embedded: one self-contained page


@pytest.mark.sim
@pytest.mark.slow
def test_adding_a_horizon_schedules_only_its_evaluations_and_the_report(tiny_run):
    cfg = variant(tiny_run, "h32", lambda c: c["eval"].update(exec_horizons=[8, 16, 32, 64]))
    jobs = planned_jobs(tiny_run, "--configfile", cfg)
    assert jobs == {"eval_config": 2, "evaluate": 2, "target_settings": 1, "settings_marker": 1, "report": 1, "all": 1}
    proc = snakemake(tiny_run, "--configfile", cfg, "-n", "-p")
    outputs = re.findall(r"rule evaluate:\n\s+input:.*?\n\s+output: (\S+)", proc.stdout, flags=re.S)
    assert len(outputs) == 2 and all("/h32/summary-" in o for o in outputs), outputs


@pytest.mark.sim
@pytest.mark.slow
def test_code_edits_rerun_their_stage_and_comment_edits_nothing(tiny_run):
    train_py = tiny_run / "rdt" / "training" / "command.py"
    evaluate_py = tiny_run / "rdt" / "evaluation" / "run.py"
    original_train, original_eval = train_py.read_text(), evaluate_py.read_text()
    try:
        train_py.write_text(original_train + "\n# a comment only: the fingerprint strips it\n")
        assert planned_jobs(tiny_run) == {}
        evaluate_py.write_text(original_eval + "\n_EDITED = True\n")
        # (the settings document records the code fingerprints: provenance)
        # (a new evaluation key: a new settings document for each evaluation)
        evaluation = {
            "eval_config": 6,
            "evaluate": 6,
            "settings_marker": 1,
            "target_settings": 1,
            "report": 1,
            "all": 1,
        }
        assert planned_jobs(tiny_run) == evaluation
        # training code determines the weights: its identity changes, every segment and what follows reruns
        # (the trainer's side of the same identity: tests/test_identity.py)
        train_py.write_text(original_train + "\n_EDITED = True\n")
        # (the training key covers the code, so the retrain goes to a new folder and needs its run.yaml)
        assert planned_jobs(tiny_run) == {**evaluation, "run_config": 1, "run_marker": 1, "train": 2}
    finally:
        train_py.write_text(original_train)
        evaluate_py.write_text(original_eval)
    assert planned_jobs(tiny_run) == {}


def _exports(work):
    return {
        str(p.relative_to(work)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted((work / "results" / "train").glob("*/export/step-*/model.safetensors"))
    }


def _summaries(work, results="results"):
    """The current plan's H=8 summaries (settings.json lists them; the folders also keep earlier requests')."""
    folder = Path(work) / results / "default"
    return {
        str(current_summary(folder, step, 8).relative_to(work)): json.loads(
            current_summary(folder, step, 8).read_text()
        )
        for step in (2, 4)
    }


@pytest.mark.sim
@pytest.mark.slow
def test_evaluation_changes_never_retrain_and_a_retrained_model_is_evaluated_again(tiny_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, symlinks=True)  # copy2 keeps the mtimes: the copy is up to date
    assert planned_jobs(work) == {}
    exports = _exports(work)
    assert len(exports) == 2

    # another evaluation seed and one more task: evaluation and report only, the exports untouched (one horizon
    # keeps the test short)
    def eval_change(c):
        c["eval"].update(seed=1, tasks=[TASK, TASK2], exec_horizons=[8])

    cfg = variant(work, "eval_change", eval_change)
    proc = snakemake(work, "--configfile", cfg)
    assert "rule train:" not in proc.stdout + proc.stderr and "rule run_config:" not in proc.stdout + proc.stderr
    assert _exports(work) == exports
    assert len(_summaries(work)) == 2
    for name, s in _summaries(work).items():
        assert s["overall"]["episodes"] == 2 and s["episodes_this_run"] == 2, name

    # a retrain with another learning rate: the evaluation folders (and their episodes.jsonl) are the same, every
    # episode runs again, and the new weights differ from the old ones, which stay untouched
    def retrain(c):
        eval_change(c)
        c["train"].update(learning_rate=3e-4)

    proc = snakemake(work, "--configfile", variant(work, "retrain", retrain))
    assert (proc.stdout + proc.stderr).count("rule train:") == 2
    after = _exports(work)
    new = {k: v for k, v in after.items() if k not in exports}
    assert {k: after[k] for k in exports} == exports and len(new) == 2
    assert not {v[1] for v in new.values()} & {v[1] for v in exports.values()}
    for name, s in _summaries(work).items():
        assert s["episodes_this_run"] == s["overall"]["episodes"] == 2 and s["episodes_from_earlier_runs"] == 0
        assert s["info"]["identity"].startswith("training:"), name


def test_config_readme_documents_every_key():
    from rdt.train_config import TrainConfig

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    keys = []
    for name, prop in schema["properties"].items():
        keys.append(name)
        if name not in ("runs", "evaluate_checkpoints"):
            keys += [f"{name}.{sub}" for sub in prop.get("properties", {})]
    keys += [f"train.{f}" for f in TrainConfig.__dataclass_fields__ if f not in ("data", "lang", "stats", "run")]
    documented = set(re.findall(r"`([a-z_0-9]+(?:\.[a-z_0-9]+)?)`", readme))
    # grouped rows such as `train.adam_beta1` / `adam_beta2` document the keys after the first by their short name
    documented |= {f"train.{k}" for k in documented if "." not in k}
    missing = [k for k in keys if k not in documented]
    assert not missing, f"config/README.md does not document {missing}"
    run_keys = {f for f in TrainConfig.__dataclass_fields__ if f not in ("data", "lang", "stats", "run")}
    assert set(schema["properties"]["train"]["properties"]) == run_keys | {"gpus", "max_steps"}


@pytest.mark.sim
@pytest.mark.slow
def test_without_snakemake_metadata_a_changed_setting_reruns_and_the_report_shows_only_the_current_plan(
    tiny_run, tmp_path
):
    """Issue 20: after moving the results folder, in a fresh clone, without .snakemake/, changing eval.seed said
    "Nothing to be done" and the summaries kept seed 0; the report also read every evaluation folder it found. Now
    an evaluation's summary is named by its identity, so the change is a missing file; the report reads the plan's."""
    clone = copy_repo(tmp_path / "clone")  # a fresh clone: no .snakemake/
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run / "results", moved, symlinks=True)  # the results moved elsewhere (mtimes kept)

    def at_moved(c):
        c["results"] = str(moved)

    # moved: nothing runs again but run.yaml, which names the training's files (its key marker is new)
    assert planned_jobs(clone, "--configfile", variant(clone, "moved", at_moved)) == {
        "all": 1,
        "run_config": 1,
        "run_marker": 1,
    }

    def seed1(c):
        at_moved(c)
        c["eval"].update(seed=1, exec_horizons=[8])

    proc = snakemake(clone, "--configfile", variant(clone, "seed1", seed1))
    text = proc.stdout + proc.stderr
    assert "rule train:" not in text and text.count("rule evaluate:") == 2
    for name, s in _summaries(moved, ".").items():
        assert s["settings"]["seed"] == 1 and s["episodes_this_run"] == 1, name
    # the earlier seed-0 summaries are still there, but the report shows exactly the plan's evaluations
    assert len(list((moved / "default" / "eval").glob("step-*/h*/summary*.json"))) == 8
    rows = list(csv.DictReader((moved / "report" / RESULTS_TABLE).open()))
    assert {(r["step"], r["horizon"]) for r in rows} == {("2", "8"), ("4", "8")}
    provenance = json.loads((moved / "report" / PROVENANCE).read_text())
    assert {r["settings"]["seed"] for r in provenance["runs"]["default"]["results"]} == {1}

    # back to seed 0, again without .snakemake/: its summaries are there, older than settings.json and the report,
    # which showed seed 1 ("Nothing to be done"); the settings document's key marker is missing again, so the
    # document and the report are written again, and nothing is evaluated
    shutil.rmtree(clone / ".snakemake")
    seed0 = variant(clone, "seed0", lambda c: (at_moved(c), c["eval"].update(exec_horizons=[8])))
    ran = _ran(snakemake(clone, "--configfile", seed0))
    assert ran == {"all": 1, "report": 1, "settings_marker": 1, "target_settings": 1}
    provenance = json.loads((moved / "report" / PROVENANCE).read_text())
    assert {r["settings"]["seed"] for r in provenance["runs"]["default"]["results"]} == {0}
    assert [p.name for p in (moved / "default").glob(".settings-*")] == [f".settings-{_settings_key(clone, seed0)}"]

    # a report setting, without .snakemake/: the report's own marker
    shutil.rmtree(clone / ".snakemake")
    assert len(list((moved / "report" / "videos").glob("*.mp4"))) == 1

    def no_videos(c):
        at_moved(c)
        c["eval"].update(exec_horizons=[8])
        c["report"].update(videos=0)

    assert _ran(snakemake(clone, "--configfile", variant(clone, "no_videos", no_videos))) == {
        "all": 1,
        "report": 1,
        "report_marker": 1,
    }
    assert not list((moved / "report" / "videos").glob("*.mp4"))

    # a longer training in the moved folder, without .snakemake/: with run.yaml naming the old folder's files, the
    # trainer found none there and refused the step-4 export as another training's (rewritten above, it continues)
    shutil.rmtree(clone / ".snakemake")

    def longer(c):
        no_videos(c)
        c["train"]["max_steps"] = 6

    ran = _ran(snakemake(clone, "--configfile", variant(clone, "longer", longer)))
    assert ran["train"] == ran["evaluate"] == 1 and "run_config" not in ran, ran
    [train] = (moved / "train").iterdir()
    pipeline = [json.loads((train / "export" / f"step-{s}" / "pipeline.json").read_text()) for s in (4, 6)]
    assert pipeline[0]["identity"] == pipeline[1]["identity"]


def _settings_key(work, configfile) -> str:
    plan = Plan(yaml.safe_load(Path(configfile).read_text()), base_dir=work, check_files=False)
    return Path(plan.settings_marker("default")).name.removeprefix(".settings-")


def _ran(proc) -> dict[str, int]:
    """The jobs a Snakemake run executed, by rule (from its log: `rule X:`, `localrule X:`, `checkpoint X:`)."""
    names = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", proc.stdout + proc.stderr, re.MULTILINE)
    return {name: names.count(name) for name in sorted(set(names))}


def _made(work) -> dict:
    """What the training side made (data, statistics, language, exported weights): path -> (mtime, sha256)."""
    files = [*(work / "results" / "cache").glob("data/*/*"), *(work / "results" / "cache").glob("language/*/*")]
    return {
        **{str(p.relative_to(work)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files},
        **_exports(work),
    }


@pytest.mark.sim
@pytest.mark.slow
def test_a_simulator_wrapper_edit_reruns_demos_and_evaluation_and_changed_demos_retrain(tiny_run, tmp_path):
    """Issue 20 item 6: an edit of the simulator wrapper (rdt/libero/env.py, part of the expert's code and the
    evaluator's) planned conversion, statistics, language and training again. Now the demos are generated again and
    what is made from them keeps the earliest generation with identical demos (rdt/plan/demos.py): the training side
    is untouched. An expert edit that changes the demos retrains, as it must."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, symlinks=True)
    cfg = variant(work, "h8", lambda c: c["eval"].update(exec_horizons=[8]))  # one horizon keeps the test short
    snakemake(work, "--configfile", cfg)
    before = _made(work)
    demos = work / "results" / "cache" / "demos"
    [first] = [json.loads((d / "expert_summary.json").read_text()) for d in demos.iterdir()]

    env_py = work / "rdt" / "libero" / "env.py"
    env_py.write_text(env_py.read_text() + "\n_EDITED = True\n")
    # demo generation and the evaluation side only
    evaluation = {
        "all": 1,
        "eval_config": 2,
        "evaluate": 2,
        "expert_demos": 1,
        "report": 1,
        "settings_marker": 1,
        "target_settings": 1,
    }
    assert _ran(snakemake(work, "--configfile", cfg)) == evaluation
    assert _made(work) == before
    records = [json.loads((d / "expert_summary.json").read_text()) for d in demos.iterdir()]
    assert len(records) == 2 and {r["content"] for r in records} == {first["content"]}
    settings = json.loads((work / "results" / "default" / "settings.json").read_text())
    assert settings["demos"]["code"] == first["code"] != max(records, key=lambda r: r["finished"])["code"]
    for name, s in _summaries(work).items():  # evaluated again with the edited simulator wrapper
        assert s["episodes_this_run"] == s["overall"]["episodes"] == 1, name

    # the expert steers differently: other demos, so new data and a new training (the old ones stay untouched)
    policy_py = work / "rdt" / "libero" / "expert_policy.py"
    policy_py.write_text(policy_py.read_text() + "\nPOS_GAIN = 8.0\n")
    training = {"convert": 1, "encode": 1, "run_config": 1, "run_marker": 1, "stats": 1, "train": 2}
    assert _ran(snakemake(work, "--configfile", cfg)) == {**evaluation, **training}
    after = _made(work)
    new = {k: v for k, v in after.items() if k not in before}
    assert {k: after[k] for k in before} == before  # the evaluated tasks' language is the same file
    assert sorted(Path(k).name for k in new) == [
        "data.h5",
        "dataset_stat.json",
        "lang.safetensors",
        "model.safetensors",
        "model.safetensors",
    ]
    assert not {v[1] for v in new.values()} & {v[1] for v in before.values()}
    assert (
        len({r["content"] for r in (json.loads((d / "expert_summary.json").read_text()) for d in demos.iterdir())}) == 2
    )
