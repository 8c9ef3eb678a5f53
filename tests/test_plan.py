"""The experiment plan (rdt/plan/) without Snakemake: config overlays and --config strings, the training's key and
identity (evaluation settings never feed training), the segment schedule, evaluation inputs, the settings document,
and the clear errors for names, schema violations and missing files. Every test runs in milliseconds."""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import yaml

from rdt import plan, train_config
from rdt.errors import UserError
from rdt.plan import Plan

TASK = "pick_up_the_alphabet_soup_and_place_it_in_the_basket"
BASE = {
    "demos": {"source": "expert", "suite": "libero_object", "tasks": [TASK], "episodes_per_task": 1},
    "train": {
        "max_steps": 4,
        "model": "tiny",
        "init_from": None,
        "text_encoder": "tiny",
        "vision_encoder": "tiny",
        "effective_batch_size": 4,
        "per_device_batch_size": 2,
        "checkpointing_period": 2,
    },
    "eval": {"exec_horizons": [8, 16], "episodes_per_task": 1, "max_steps": 12},
    "runs": {"default": {}},
}


def make(change=None, **kwargs) -> Plan:
    cfg = copy.deepcopy(BASE)
    if change:
        change(cfg)
    return Plan(cfg, **kwargs)


# ---------------------------------------------------------------------------------------------------- config
def test_defaults_are_filled_and_runs_overlay_the_base():
    p = make(lambda c: c["runs"].update(fast={"train": {"learning_rate": 3e-4}, "eval": {"seed": 2}}))
    assert p.config["report"] == {"videos": 4} and p.config["evaluate_checkpoints"] == []
    assert p.runs["default"]["data"] == {
        "demos_per_task": None,
        "min_steps": 10,
        "drop_noops": False,
        "image_size": None,
    }
    assert p.runs["fast"]["train"]["learning_rate"] == 3e-4 and p.runs["default"]["train"].get("learning_rate") is None
    assert p.runs["fast"]["eval"]["seed"] == 2 and p.runs["fast"]["eval"]["exec_horizons"] == [8, 16]
    # eval.suite / eval.tasks default to the demos'
    assert p.eval_settings("default")["suite"] == "libero_object" and p.eval_settings("default")["tasks"] == [TASK]
    assert p.resolved_train("default")["lr_warmup_steps"] == train_config.TrainConfig.lr_warmup_steps


def test_numbers_from_the_command_line_arrive_as_strings_and_are_converted():
    # snakemake --config 'train={max_steps: 90, learning_rate: 3e-4}' 'eval={exec_horizons: [8, 16]}' passes strings
    def strings(c):
        c["train"].update(max_steps="90", learning_rate="3e-4", init_from="null", image_aug="false")
        c["eval"].update(exec_horizons=["8", "16"], max_steps="null")
        c["runs"] = {"default": {"train": {"lr_warmup_steps": "7"}}}

    p = make(strings)
    t = p.runs["default"]["train"]
    assert (t["max_steps"], t["learning_rate"], t["init_from"], t["image_aug"]) == (90, 3e-4, None, False)
    assert p.runs["default"]["eval"]["exec_horizons"] == [8, 16] and p.runs["default"]["eval"]["max_steps"] is None
    assert p.resolved_train("default")["lr_warmup_steps"] == 7
    assert p.segment_steps("default")[-1] == 90
    # text stays text where the schema wants text
    assert make(lambda c: c["train"].update(text_encoder="123")).resolved_train("default")["text_encoder"] == "123"


def test_schema_errors_name_the_key_and_show_the_form_that_works():
    with pytest.raises(UserError, match=r"(?s)train.max_steps: 'ninety'.*--config 'train=\{max_steps: 90\}'"):
        make(lambda c: c["train"].update(max_steps="ninety"))
    with pytest.raises(UserError, match="lerning_rate"):
        make(lambda c: c["train"].update(lerning_rate=1e-3))
    with pytest.raises(UserError, match=r"(?s)runs.fast.*train.learning_rate: .high."):
        make(lambda c: c["runs"].update(fast={"train": {"learning_rate": "high"}}))
    with pytest.raises(UserError, match="code_fingerprint"):
        make(lambda c: c["train"].update(code_fingerprint="not-hex"))


@pytest.mark.parametrize(
    "runs, checkpoints, message",
    [
        (["train"], [], r"runs: name\(s\) \['train'\] are reserved"),
        ([], ["report"], r"evaluate_checkpoints: name\(s\) \['report'\] are reserved"),
        ([], ["a", "a"], r"\['a'\] appear more than once"),
        (["a"], ["a"], r"\['a'\] are also names of runs"),
    ],
)
def test_target_names_reserved_duplicate_and_clashing_are_errors(runs, checkpoints, message):
    with pytest.raises(UserError, match=message):
        plan.check_target_names(runs, checkpoints)


def test_missing_files_named_in_the_config_are_errors_at_parse_time(tmp_path):
    def folder(c):
        c["demos"].update(source="folder", folder="data/libero/libero_90")

    with pytest.raises(UserError, match=r"runs.default: demos.folder 'data/libero/libero_90' does not exist"):
        make(folder, base_dir=tmp_path)
    demos = tmp_path / "data" / "libero" / "libero_90"
    demos.mkdir(parents=True)
    with pytest.raises(UserError, match=r"runs.default: demos.folder 'data/libero/libero_90': no '\*_demo.hdf5'"):
        make(folder, base_dir=tmp_path)
    (demos / f"{TASK}_demo.hdf5").touch()
    assert make(folder, base_dir=tmp_path).demo_settings("default")["source"] == "folder"

    def everything(c):  # a partial download: 1 of the suite's 10 tasks is there
        folder(c)
        c["demos"]["tasks"] = ["all"]

    with pytest.raises(UserError, match=r"9 of the 10 selected task\(s\) of suite 'libero_object'.*partial download"):
        make(everything, base_dir=tmp_path)

    with pytest.raises(UserError, match=r"train.init_from '/nowhere/ckpt' is neither a local checkpoint"):
        make(lambda c: c["train"].update(init_from="/nowhere/ckpt"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()

    def entry(**kw):
        return lambda c: c.update(evaluate_checkpoints=[{"name": "released", "path": str(ckpt), **kw}])

    with pytest.raises(UserError, match=r"evaluate_checkpoints.released: path '/nowhere' does not exist"):
        make(lambda c: c.update(evaluate_checkpoints=[{"name": "released", "path": "/nowhere"}]))
    with pytest.raises(UserError, match=r"evaluate_checkpoints.released: stats 'missing.json' does not exist"):
        make(entry(stats="missing.json", text_encoder="tiny"), base_dir=tmp_path)
    with pytest.raises(UserError, match=r"does not name the text encoder; set text_encoder"):
        make(entry()).text_encoder("released")
    (tmp_path / "missing.json").write_text("{}")
    p = make(entry(stats="missing.json", text_encoder="tiny", step=7), base_dir=tmp_path)
    assert p.eval_stats("released") == ["missing.json"] and p.eval_steps("released") == [7]
    # statistics reach evaluation one way: not both from the checkpoint's pipeline.json and from the config
    (ckpt / "pipeline.json").write_text(json.dumps({"text_encoder": "tiny", "dataset_stat": {"state_mean": []}}))
    with pytest.raises(UserError, match=r"carries the statistics the checkpoint was trained with.*stats: null"):
        make(entry(stats="missing.json"), base_dir=tmp_path)


# ---------------------------------------------------------------------------------------------------- identity
def test_evaluation_settings_never_change_training(monkeypatch):
    base = make()
    key, identity, lang = base.train_key("default"), base.train_identity("default"), base.language_path("default")
    for change in (
        lambda c: c["eval"].update(tasks=[TASK, "pick_up_the_cream_cheese_and_place_it_in_the_basket"]),
        lambda c: c["eval"].update(seed=5, suite="libero_goal", tasks=["all"]),
        lambda c: c["eval"].update(exec_horizons=[32], episodes_per_task=3, weights="model"),
    ):
        p = make(change)
        assert p.train_key("default") == key and p.train_identity("default") == identity
        assert p.language_path("default") == lang and p.train_settings("default")["lang"] == lang
        assert (
            p.task_language_path("default") != base.task_language_path("default")
            or p.eval_settings("default")["tasks"] == base.eval_settings("default")["tasks"]
        )
    # three runs that differ only in eval.seed share one training (and one training folder)
    p = make(lambda c: c.update(runs={f"seed{s}": {"eval": {"seed": s}} for s in range(3)}))
    assert len(p.trainings) == 1 and len({p.export_path(r, 2) for r in p.runs}) == 1
    assert len({p.summary_path(r, 2, 8) for r in p.runs}) == 3


def test_training_settings_and_code_change_the_identity_bookkeeping_does_not(monkeypatch):
    base = make()
    identity = base.train_identity("default")
    assert identity["code"] == train_config.code_fingerprint()
    assert make(lambda c: c["train"].update(learning_rate=3e-4)).train_identity("default") != identity
    assert make(lambda c: c["demos"].update(seed=1)).train_identity("default") != identity  # other data
    key = base.train_key("default")
    for bookkeeping in (
        {"log_period": 1},
        {"checkpoints_total_limit": 2},
        {"sample_period": 0},
        {"gpus": 2},
        {"checkpointing_period": 1},
        {"max_steps": 8},
    ):
        changed = make(lambda c, bookkeeping=bookkeeping: c["train"].update(bookkeeping))
        assert changed.train_identity("default") == identity
        assert changed.train_key("default") == key  # same folder: its checkpoints are resumed
    assert make(lambda c: c["train"].update(learning_rate=3e-4)).train_key("default") != key
    # a code edit changes the code part (the trainer's identity includes the same fingerprint) ...
    monkeypatch.setattr(train_config, "code_fingerprint", lambda: "0123456789abcdef")
    edited = make().train_identity("default")
    assert edited["code"] == "0123456789abcdef" and edited != identity
    # ... unless the edit is declared not to change the weights: the pin is the identity's code part
    pinned = make(lambda c: c["train"].update(code_fingerprint=identity["code"])).train_identity("default")
    assert pinned["code"] == identity["code"]


def test_trainer_identity_includes_the_code_or_its_pin(monkeypatch, tmp_path):
    files = {k: str(tmp_path / k) for k in ("data", "lang", "stats")}
    cfg = train_config.from_dict({**files, "model": "tiny"})
    before = cfg.fingerprint()
    monkeypatch.setattr(train_config, "code_fingerprint", lambda: "0123456789abcdef")
    assert cfg.fingerprint() != before
    pinned = train_config.from_dict({**files, "model": "tiny", "code_fingerprint": "0123456789abcdef"})
    monkeypatch.undo()
    assert pinned.fingerprint() != before and pinned.training_code() == "0123456789abcdef"


def test_runs_share_demos_conversion_and_language_where_settings_are_equal():
    p = make(
        lambda c: c.update(
            runs={
                "current": {"train": {"effective_batch_size": 2, "lr_warmup_steps": 1}},
                "improved": {"train": {"effective_batch_size": 4, "lr_warmup_steps": 2}},
                "more_demos": {"demos": {"episodes_per_task": 2}},
                "fewer_demos": {"demos": {"episodes_per_task": 2}, "data": {"demos_per_task": 1}},
            }
        )
    )
    # current + improved share everything up to training; more_demos needs its own demos; fewer_demos reuses
    # those demos but converts its own subset
    assert len(p.demos) == 2 and len(p.data) == 3 and len(p.language) == 3 and len(p.trainings) == 4
    assert p.data_path("current") == p.data_path("improved") != p.data_path("more_demos")
    demos = [p.demos_input(p.data_settings(r)["demos"]) for r in ("more_demos", "fewer_demos")]
    assert demos[0] == demos[1]


# ---------------------------------------------------------------------------------------------------- expert demos
def _generation(tmp_path, settings: dict, code: str, content: str, finished: str):
    """A finished generation folder of expert demos as `rdt expert` leaves it: named by the settings with its code,
    its summary recording that code, the demos' digest and when it finished."""
    folder = tmp_path / "results" / "cache" / "demos" / plan.key_of({**settings, "code": code})
    folder.mkdir(parents=True)
    record = {"suite": settings["suite"], "code": code, "content": content, "finished": finished}
    (folder / "expert_summary.json").write_text(json.dumps(record))
    return folder


class Waits(Exception):
    """Stands for Snakemake's IncompleteCheckpointException."""


def test_an_expert_code_edit_keeps_the_data_of_identical_demos_and_changes_it_for_other_ones(tmp_path):
    """Issue 20 item 6: an edit of the simulator wrapper (part of the expert's code) regenerates the demos; the data
    and trainings made from them are keyed by the earliest generation with the same content."""
    waited: list[str] = []
    p = make(base_dir=tmp_path, await_demos=waited.append)
    current = p.demo_settings("default")
    # nothing generated yet: the current code's generation, with nothing to wait for
    assert p.demos_used("default") == current and waited == []
    fresh = (p.data_path("default"), p.train_key("default"), p.demos_input(p.data_settings("default")["demos"]))
    assert fresh[2] == f"results/cache/demos/{plan.key_of(current)}"

    # an earlier code's generation exists, the current one not: undecided, so the plan waits for the current one
    # (predicting it, when the wait returns without it); a wait that raises decides nothing
    old = _generation(tmp_path, current, "old-code", "digest-a", "2026-12-01T00:00:00+00:00")
    waiting = make(base_dir=tmp_path, await_demos=lambda key: (waited.append(key), (_ for _ in ()).throw(Waits()))[0])
    with pytest.raises(Waits):
        waiting.train_key("default")
    assert waited == [plan.key_of(current)]
    assert make(base_dir=tmp_path).data_path("default") == fresh[0]

    # the current code made the same demos: the data, language and training stay the earlier generation's
    new = _generation(tmp_path, current, current["code"], "digest-a", "2026-12-05T00:00:00+00:00")
    assert waiting.demos_used("default") == {**current, "code": "old-code"}  # (the raised wait kept nothing)
    same = make(base_dir=tmp_path)
    assert same.demos_used("default") == {**current, "code": "old-code"}
    assert same.demos_input(same.data_settings("default")["demos"]) == str(old.relative_to(tmp_path))
    assert same.data_path("default") != fresh[0] and same.train_key("default") != fresh[1]
    assert set(same.demos) == {new.name}  # the current code's generation is still the one generated

    # other demos: the current code's generation, and new keys after it
    (new / "expert_summary.json").write_text(
        json.dumps({"code": current["code"], "content": "digest-b", "finished": "2026-12-05T00:00:00+00:00"})
    )
    other = make(base_dir=tmp_path)
    assert other.demos_used("default") == current and other.data_path("default") == fresh[0]
    assert other.train_key("default") == fresh[1]


def test_generations_are_found_by_their_recorded_code_and_the_earliest_identical_one_is_used(tmp_path):
    p = make(base_dir=tmp_path)
    current = p.demo_settings("default")
    other_settings = {**current, "seed": 7}
    _generation(tmp_path, other_settings, "old-code", "digest-a", "2026-11-01T00:00:00+00:00")  # other settings
    legacy = tmp_path / "results" / "cache" / "demos" / plan.key_of({**current, "code": "legacy"})
    legacy.mkdir()
    (legacy / "expert_summary.json").write_text(json.dumps({"suite": "libero_object"}))  # written before the records
    _generation(tmp_path, current, "second", "digest-a", "2026-12-02T00:00:00+00:00")
    _generation(tmp_path, current, "first", "digest-a", "2026-12-01T00:00:00+00:00")
    _generation(tmp_path, current, "changed", "digest-b", "2026-11-01T00:00:00+00:00")
    _generation(tmp_path, current, current["code"], "digest-a", "2026-12-03T00:00:00+00:00")
    found = plan.demos.generations(tmp_path / "results" / "cache" / "demos", current)
    assert sorted(g.code for g in found.values()) == sorted(["second", "first", "changed", current["code"]])
    assert p.demos_used("default")["code"] == "first"
    replay = make(lambda c: c["runs"].update(replay={"kind": "replay"}), base_dir=tmp_path)
    assert replay.replay_settings("replay")["demos"].endswith(plan.key_of({**current, "code": "first"}))


# ---------------------------------------------------------------------------------------------------- schedule
def test_segments_resume_the_previous_segment_end_of_the_same_training():
    p = make(lambda c: c["train"].update(max_steps=7, checkpointing_period=3))
    key = p.train_key("default")
    assert p.segment_steps("default") == [3, 6, 7]
    assert p.previous_export(key, 3) == []
    assert p.previous_export(key, 6) == [f"results/train/{key}/export/step-3"]
    assert p.previous_export(key, 7) == [f"results/train/{key}/export/step-6"]
    # a longer run of the same training continues the same chain
    q = make(
        lambda c: (
            c.update(runs={"short": {}, "long": {"train": {"max_steps": 12}}})
            or c["train"].update(max_steps=7, checkpointing_period=3)
        )
    )
    assert len(q.trainings) == 1 and q.segment_steps("long") == [3, 6, 9, 12]
    assert q.previous_export(key, 9) == [f"results/train/{key}/export/step-6"]


def test_evaluation_inputs_of_runs_and_checkpoints(tmp_path):
    ckpt = tmp_path / "released"
    ckpt.mkdir()
    (ckpt / "pipeline.json").write_text(json.dumps({"text_encoder": "t5"}))
    p = make(lambda c: c.update(evaluate_checkpoints=[{"name": "released", "path": str(ckpt), "step": 9}]))
    assert p.targets == ["default", "released"]
    assert p.checkpoint_input("default", 4) == [p.export_path("default", 4)]
    assert p.checkpoint_input("released", 9) == [str(ckpt)] and p.checkpoint_ref("released", 9) == str(ckpt)
    assert p.eval_stats("default") == []  # a run's statistics come with its export's pipeline.json
    assert p.task_language_settings("released")["text_encoder"] == "t5"
    language = p.task_language_settings("default")
    assert language.pop("code") == plan.code_fingerprint("encode")  # a changed encoder code encodes again
    assert language == {"suite": "libero_object", "tasks": [TASK], "text_encoder": "tiny"}
    assert len(p.task_language) == 2
    assert p.summaries("default") == [p.summary_path("default", s, h) for s in (2, 4) for h in (8, 16)]


def test_each_evaluation_has_a_settings_document_of_the_plans_settings():
    """Issue 22: the evaluate rule runs `rdt evaluate --config eval-<key>.yaml`; the document is the plan's
    eval_settings at that step and horizon with the checkpoint, its inputs and where success goes, and it validates
    (rdt/evaluation/config.py). Its extra keys do not enter the evaluation key."""
    from pathlib import Path

    from rdt.evaluation import config as eval_config

    budget = make(lambda c: c["eval"].update(intermediate_episodes_per_task=1, episodes_per_task=3))
    for step in budget.eval_steps("default"):
        e = budget.eval_settings("default", step)
        doc = budget.eval_config("default", step, 16)
        cfg = eval_config.from_dict(yaml.safe_load(eval_config.dump(doc)), source="eval.yaml")  # valid, round trip
        assert cfg.to_dict() == {**eval_config.EvalConfig().to_dict(), **doc}
        for key in ("suite", "tasks", "episodes_per_task", "max_steps", "seed", "videos_per_task", "weights"):
            assert doc[key] == e[key], key
        assert doc["exec_horizons"] == [16] and doc["checkpoint"] == budget.export_path("default", step)
        assert doc["lang"] == budget.task_language_path("default") and doc["stats"] is None
        assert doc["tensorboard"] == f"{budget.train_dir('default')}/tensorboard/eval-default"
        assert (doc["report_to"], doc["run"]) == ("none", "default")
    assert [budget.eval_config("default", s, 8)["episodes_per_task"] for s in (2, 4)] == [1, 3]
    summary = Path(budget.summary_path("default", 4, 8))
    assert summary.name == f"summary-{budget.eval_key('default', 4, 8)}.json"


# ---------------------------------------------------------------------------------------------------- settings
def test_settings_document_round_trip(tmp_path):
    p = make(lambda c: c.update(results=str(tmp_path / "results")))
    doc = p.settings_document("default")
    assert doc["kind"] == "run" and doc["train"]["learning_rate"] == 1e-4 and doc["exec_horizons"] == [8, 16]
    folder = tmp_path / "results" / "default"
    assert (folder / doc["train"]["lang"]).resolve() == (tmp_path / p.language_path("default")).resolve()
    assert doc["train_code"] == train_config.code_fingerprint()
    plan.write_settings(folder / plan.SETTINGS_FILE, json.loads(json.dumps(doc)))
    back = plan.read_settings(folder)
    assert plan.train_folder(folder, back).resolve() == (tmp_path / "results" / "train" / p.train_key("default"))
    assert plan.read_settings(tmp_path) is None and plan.train_folder(tmp_path, None) == tmp_path / "train"
    (folder / plan.SETTINGS_FILE).write_text(json.dumps({"kind": "run"}))
    with pytest.raises(UserError, match=r"settings.json: not a settings document of format 'rdt-settings/1'"):
        plan.read_settings(folder)


def test_key_markers_follow_the_documents_and_not_where_the_results_folder_is(tmp_path):
    """The settings document names its files relative to its folder, so its key marker (an input of the workflow's
    target_settings rule) stays the same when the results folder moves, and changes with a setting; writing a marker
    removes the other markers of its kind only (going back to a key is a missing file again)."""
    here = make(lambda c: c.update(results=str(tmp_path / "results")))
    moved = make(lambda c: c.update(results=str(tmp_path / "elsewhere")))
    seed1 = make(lambda c: c.update(results=str(tmp_path / "results"), eval={**c["eval"], "seed": 1}))

    def name(path: str) -> str:
        return os.path.basename(path)

    assert name(here.settings_marker("default")) == name(moved.settings_marker("default"))
    assert name(here.report_marker()) == name(moved.report_marker()) == name(seed1.report_marker())
    assert name(seed1.settings_marker("default")) != name(here.settings_marker("default"))
    plan.write_marker(here.settings_marker("default"))
    plan.write_marker(here.report_marker())
    plan.write_marker(seed1.settings_marker("default"))
    assert sorted(p.name for p in (tmp_path / "results").rglob(".*")) == sorted(
        [name(seed1.settings_marker("default")), name(here.report_marker())]
    )


def test_the_shipped_configs_are_valid_plans():
    from pathlib import Path

    root = Path(plan.__file__).resolve().parents[2]
    tiny = Plan(yaml.safe_load((root / "config" / "config.yaml").read_text()))
    assert list(tiny.runs) == ["default", "seed1", "seed2"]  # one training, three evaluation seeds
    assert len({tiny.train_key(r) for r in tiny.runs}) == 1
    assert [tiny.eval_steps(r) for r in tiny.runs] == [[750, 1500], [1500], [1500]]
    check = Plan(yaml.safe_load((root / "config" / "learning_check.yaml").read_text()))
    assert list(check.runs) == ["seed0", "seed1", "seed2", "seed3"]
    assert len({check.train_key(r) for r in check.runs}) == 1
    assert [check.runs[r]["eval"]["seed"] for r in check.runs] == [0, 1, 2, 3]
    study = Plan(yaml.safe_load((root / "config" / "study.yaml").read_text()))
    assert list(study.runs) == ["main", "main_seed1", "no_noise", "no_norm", "current", "one_demo"]
    assert list(study.replays) == ["replay", "replay_one_demo"]
    # the ablations differ from main in one setting each
    assert study.settings("no_noise")["demos"]["action_noise"] == 0.0 != study.settings("main")["demos"]["action_noise"]
    assert study.resolved_train("no_norm")["state_norm"] == "none" != study.resolved_train("main")["state_norm"]
    # sized to decide: at least 20 held-out init states per cell, disjoint from the demos' (25..)
    assert all(study.eval_episodes(t, study.eval_steps(t)[-1]) >= 20 for t in study.targets)
    assert study.settings("main")["demos"]["first_init_state"] >= 20
    assert study.horizons("main") == [8, 16, 64]
    # "same samples seen": the current recipe's steps x batch equal the improved one's
    assert [
        study.runs[r]["train"]["max_steps"] * study.runs[r]["train"]["effective_batch_size"]
        for r in ("current", "main")
    ] == [64000, 64000]
    # the floor replays the clean demos (main's are recorded with noise injection)
    assert study.demo_settings("replay") != study.demo_settings("main")
    assert "action_noise" not in study.demo_settings("replay") and study.demo_settings("main")["action_noise"] == 0.1
    assert study.resolved_train("main")["state_norm"] == "zscore"
    paper = yaml.safe_load((root / "config" / "rdt1b_libero90.yaml").read_text())
    with pytest.raises(UserError, match="demos.folder 'data/libero/libero_90' does not exist"):
        Plan(paper)
    assert Plan(paper, check_files=False).segment_steps("rdt1b")[:2] == [2000, 4000]


# ---------------------------------------------------------------------------------------------------- replay runs
def test_replay_runs_evaluate_the_demos_of_their_settings_without_training():
    def change(c):
        c["data"] = {"demos_per_task": None}
        c["runs"].update(
            one_demo={"data": {"demos_per_task": 1}},
            replay={"kind": "replay"},
            replay_one={"kind": "replay", "data": {"demos_per_task": 1}},
        )

    p = make(change)
    assert list(p.runs) == ["default", "one_demo"] and list(p.replays) == ["replay", "replay_one"]
    assert p.targets == ["default", "one_demo", "replay", "replay_one"]
    assert p.kind("replay") == "replay" and p.kind("default") == "run"
    # one evaluation: step 0, horizon 0 (open loop); the demos are the runs' (one expert job for all four)
    [summary] = p.summaries("replay")
    assert summary == f"results/replay/eval/step-0/h0/summary-{p.eval_key('replay', 0, 0)}.json"
    assert len(p.demos) == 1 and p.replay_settings("replay")["demos"] == p.demos_input(p.demos_used("default"))
    assert (
        p.replay_settings("replay_one")["demos_per_task"] == 1 and p.replay_settings("replay")["demos_per_task"] is None
    )
    assert p.replay_settings("replay")["episodes_per_task"] == 1 and p.replay_settings("replay")["max_steps"] == 12
    # no training, no instruction embeddings, no policy calls in the plan's cost
    assert len(p.trainings) == 2 and len(p.task_language) == 1  # default and one_demo train; replays do not
    assert p.eval_cost("replay")["total"]["policy_calls_max"] == 0
    doc = p.settings_document("replay")
    assert doc["kind"] == "replay" and doc["demos"] == p.settings_document("default")["demos"]
    assert doc["demos_per_task"] is None and p.settings_document("one_demo")["demos_per_task"] == 1
    assert "train" not in doc


def test_replay_of_a_lerobot_dataset_is_refused(tmp_path):
    (tmp_path / "ds").mkdir()

    def change(c):
        c["demos"] = {"source": "lerobot", "folder": str(tmp_path / "ds")}
        c["runs"] = {"replay": {"kind": "replay"}}

    with pytest.raises(UserError, match="lerobot has no simulator states"):
        make(change)


def test_noise_injection_enters_the_demo_key_only_when_set():
    plain = make()
    noisy = make(lambda c: c["demos"].update(action_noise=0.1))
    assert "action_noise" not in plain.demo_settings("default")
    assert noisy.demo_settings("default")["action_noise"] == 0.1
    assert set(plain.demos) != set(noisy.demos) and plain.train_key("default") != noisy.train_key("default")


def test_a_task_not_in_the_suite_is_one_line_at_parse_time():
    """Found while planning inside a rule's input function, it reached the user as Snakemake's
    InputFunctionException with a traceback (issue 20); now the plan refuses it, naming the key."""
    with pytest.raises(UserError, match=r"^runs\.default\.eval\.tasks: no task of suite 'libero_object' matches"):
        make(lambda c: c["eval"].update(tasks=["put_the_bowl_on_the_plate_nowhere"]))
    with pytest.raises(UserError, match=r"^runs\.default\.demos\.tasks: "):
        make(lambda c: c["demos"].update(tasks=["nope"]))


def test_a_released_checkpoint_by_hub_id_is_evaluated_through_the_workflow(tmp_path, monkeypatch):
    """Issue 21: an evaluate_checkpoints entry with a hub id failed at DAG build (the id was declared as an input
    file), `weights: ema` failed on a released folder (no EMA) and a folder without pipeline.json could not be given
    its vision encoder and control frequency. Now the id is passed, not declared; the entry's weights default to
    auto (EMA when the folder has them) and it carries the encoder and frequency flags; the cached snapshot's files
    are the evaluation's identity."""
    import huggingface_hub.constants as hf_constants

    from test_checkpoint import PARITY, hub_cache

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache(tmp_path / "hub")))
    entry = {
        "name": "released",
        "path": "robotics-diffusion-transformer/rdt-1b",
        "text_encoder": "tiny",
        "vision_encoder": "google/siglip-so400m-patch14-384",
        "control_frequency": 20,
    }
    p = make(lambda c: c.update(runs={}, evaluate_checkpoints=[entry]))
    assert p.checkpoint_input("released", 0) == [] and p.checkpoint_ref("released", 0) == entry["path"]
    doc = p.eval_config("released", 0, 8)
    assert doc["weights"] is None  # weights: auto
    # a released folder has no pipeline.json: the document carries the entry's encoders and frequency
    assert (doc["text_encoder"], doc["vision_encoder"], doc["control_frequency"]) == (
        "tiny",
        "google/siglip-so400m-patch14-384",
        20,
    )
    assert doc["checkpoint"] == entry["path"] and doc["exec_horizons"] == [8] and "tensorboard" not in doc
    files = p.eval_identity("released", 0, 8)["weights"]["files"]
    assert set(files) == {n for n in ("config.json", "pytorch_model.bin", "model.safetensors") if (PARITY / n).exists()}
    model = make(lambda c: c.update(runs={}, evaluate_checkpoints=[{**entry, "weights": "model"}]))
    assert model.eval_config("released", 0, 8)["weights"] == "model"
    assert model.eval_key("released", 0, 8) != p.eval_key("released", 0, 8)
    # a run keeps eval.weights, and its export is the declared input
    run = make()
    assert run.eval_config("default", 4, 8)["weights"] == "ema"
    assert run.checkpoint_input("default", 4) == [run.checkpoint_ref("default", 4)]


def test_the_workflow_plans_a_hub_id_checkpoint_without_a_missing_input(tmp_path):
    """The same entry through Snakemake (a dry run): the DAG builds and the evaluate job gets the id and the flags."""
    import subprocess

    from test_checkpoint import hub_cache
    from workflow_helpers import SNAKEMAKE, copy_repo, env_for

    hub_cache(tmp_path / "hub")
    work = copy_repo(tmp_path / "repo")
    cfg = {
        **{k: v for k, v in BASE.items() if k != "runs"},
        "results": "results/released",
        "runs": {},
        "evaluate_checkpoints": [
            {
                "name": "released",
                "path": "robotics-diffusion-transformer/rdt-1b",
                "text_encoder": "tiny",
                "vision_encoder": "tiny",
                "control_frequency": 20,
            }
        ],
    }
    (work / "released.yaml").write_text(yaml.safe_dump(cfg))
    env = env_for(work) | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [SNAKEMAKE, "-n", "-p", "--cores", "1", "--configfile", "released.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    commands = [line for line in done.stdout.splitlines() if "rdt evaluate" in line]
    assert len(commands) == 2, commands  # H=8 and H=16
    # each reads the settings document of its request (the plan's eval_config: the id, the entry's vision encoder
    # and control frequency, weights null = EMA when the folder has them; checked above), named by the same key
    for c in commands:
        config = re.search(r"--config (\S+)/eval-([0-9a-f]{12})\.yaml", c)
        assert config and f"--out {config.group(1)} --summary-name summary-{config.group(2)}.json" in c, c
    assert re.search(r"^eval_config\s+2$", done.stdout, re.M)  # the documents are written before
