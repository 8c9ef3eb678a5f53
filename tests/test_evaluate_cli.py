"""`python -m rdt evaluate` as one command for any checkpoint (issue 12): several horizons per call (each into
--out/h<H>), --episodes defaulting to the LIBERO convention (50), language encoded on the fly without --lang; its
settings document (issue 22: --config FILE, rdt/evaluation/config.py) with every flag over it, validated once.
No simulator here: parsing, the settings document, output folders and the on-the-fly language table with the tiny
encoder."""

from pathlib import Path

import pytest
import yaml

from rdt import cli
from rdt.errors import UserError
from rdt.evaluation import command as ev
from rdt.evaluation import config as ec
from rdt.libero import suites


def parse(argv):
    return cli.command_parser("evaluate", ev).parse_args(argv)


def request(argv):
    return ev.config_from_args(parse(argv))[0]


def test_several_horizons_and_the_episode_default():
    args = parse(["--checkpoint", "ck", "--horizon", "8", "16", "64", "--out", "o"])
    assert args.horizon == [8, 16, 64] and args.episodes is None and args.lang is None  # None: not given
    cfg = request(["--checkpoint", "ck", "--horizon", "8", "16", "64", "8", "--out", "o"])
    assert cfg.exec_horizons == [8, 16, 64] and cfg.episodes_per_task == 50 == ev.DEFAULT_EPISODES
    assert (cfg.envs, cfg.seed, cfg.videos_per_task, cfg.weights, cfg.report_to) == (1, 0, 1, None, "none")
    one = request(["--checkpoint", "ck", "--lang", "l", "--horizon", "8", "--episodes", "3", "--out", "o"])
    assert one.exec_horizons == [8] and one.episodes_per_task == 3 and one.lang == "l"
    assert ev.horizon_out(Path("o"), 8, [8]) == Path("o")  # one horizon: --out itself (the workflow)
    assert ev.horizon_out(Path("o"), 16, [8, 16]) == Path("o/h16")


def test_a_bad_horizon_is_refused_before_anything_loads(tmp_path, capsys):
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "missing"),
                "--horizon",
                "8",
                "65",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "65" in capsys.readouterr().err


def test_language_is_encoded_once_with_the_checkpoints_encoder(tmp_path):
    from rdt.lang import LanguageTable

    tasks = suites.select_tasks("libero_object", ["0", "1"])
    path = ev.encode_task_language(tasks, "tiny", tmp_path, "cpu")
    table = LanguageTable.load(path)
    assert table.encoder == "tiny" and all(t.language in table for t in tasks)
    mtime = path.stat().st_mtime_ns
    assert ev.encode_task_language(tasks[:1], "tiny", tmp_path, "cpu") == path and path.stat().st_mtime_ns == mtime


def test_success_goes_to_tensorboard_at_the_checkpoint_step(tmp_path):
    """Issue 23: success per checkpoint and horizon reaches the training's TensorBoard as evaluations finish."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rdt.evaluation.trackers import log_success

    for step, successes in ((100, 1), (200, 3)):
        summary = {"step": step, "horizon": 8, "overall": {"success_rate": successes / 4, "episodes": 4, "errors": 0}}
        assert log_success(tmp_path / "tb", summary)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("success/H8")] == [(100, 0.25), (200, 0.75)]
    assert [e.value for e in events.Scalars("episodes/H8")] == [4, 4]


def test_the_settings_document_with_the_flags_over_it(tmp_path):
    """Issue 22: the workflow's document gives every setting; a flag that is given overrides its key, one that is not
    leaves it."""
    doc = tmp_path / "eval.yaml"
    values = {
        "checkpoint": "ck",
        "suite": "libero_object",
        "tasks": [0, "1"],
        "exec_horizons": [16],
        "episodes_per_task": 3,
        "max_steps": 12,
        "seed": 2,
        "videos_per_task": 0,
        "weights": "model",
        "tensorboard": "tb",
    }
    doc.write_text(ec.dump(values))
    cfg = request(["--config", str(doc), "--out", "o"])
    assert cfg == ec.load(doc)
    assert (cfg.tasks, cfg.exec_horizons, cfg.episodes_per_task, cfg.seed, cfg.weights) == (
        ["0", "1"],
        [16],
        3,
        2,
        "model",
    )
    over = request(
        ["--config", str(doc), "--horizon", "8", "--episodes", "5", "--envs", "4", "--seed", "0", "--out", "o"]
    )
    assert (over.exec_horizons, over.episodes_per_task, over.envs, over.seed) == ([8], 5, 4, 0)
    assert over.max_steps == 12 and over.tensorboard == "tb"  # not given: the document's
    assert yaml.safe_load(ec.dump(cfg)) == cfg.to_dict()


@pytest.mark.parametrize(
    ("document", "flags", "message"),
    [
        (
            {"exec_horizons": [65]},
            [],
            r"eval.yaml: key 'exec_horizons' \(--horizon\) 65: the execution horizon must be",
        ),
        ({"exec_horizons": [8]}, ["--horizon", "0"], r"^--horizon 0: the execution horizon must be between 1"),
        ({"episodes_per_task": 51}, [], r"eval.yaml: key 'episodes_per_task' \(--episodes\) 51: each task has 50"),
        ({}, ["--episodes", "0"], r"^--episodes 0: each task has 50 init states"),
        ({"envs": 0}, [], r"key 'envs' \(--envs\) 0: expected a positive integer"),
        ({}, ["--max-steps", "0"], r"^--max-steps 0: expected a positive integer"),
        ({}, ["--camera-size", "0"], r"^--camera-size 0: expected a positive integer"),
        ({}, ["--videos-per-task", "-1"], r"^--videos-per-task -1: expected 0 or more"),
        ({"videos_per_task": -1}, [], r"key 'videos_per_task' \(--videos-per-task\) -1: expected 0 or more"),
        ({"episodes_per_task": "5"}, [], r"key 'episodes_per_task' \(--episodes\) 5: expected type int, not str"),
        ({"exec_horizons": 8}, [], r"key 'exec_horizons' \(--horizon\) 8: expected type list\[int\]"),
        ({"exec_horizons": [8, 8]}, [], r"key 'exec_horizons' \(--horizon\) 8 8: expected distinct"),
        ({"weights": "best"}, [], r"key 'weights' \(--weights\) best: expected one of ema, model"),
        (
            {"suite": "libero_100"},
            [],
            r"key 'suite' \(--suite\) libero_100: unknown LIBERO suite 'libero_100'; expected one of libero_spatial",
        ),
        ({"report_to": "mlflow"}, [], r"key 'report_to' \(--report-to\) mlflow: expected one of none, wandb"),
        ({"horizon": [8]}, [], r"eval.yaml: unknown key\(s\) 'horizon'; known keys: "),
        ({"checkpoint": None}, [], r"eval.yaml: key 'checkpoint' is required: .* or give --checkpoint"),
        ({"exec_horizons": None}, [], r"key 'exec_horizons' is required: .* or give --horizon"),
    ],
)
def test_one_validation_names_the_key_and_the_file_or_the_flag(tmp_path, document, flags, message):
    doc = tmp_path / "eval.yaml"
    doc.write_text(ec.dump({"checkpoint": "ck", "exec_horizons": [8], **document}))
    with pytest.raises(UserError, match=message):
        request(["--config", str(doc), *flags, "--out", "o"])


def test_flags_alone_need_the_checkpoint_and_a_horizon(capsys):
    assert cli.main(["evaluate", "--horizon", "8", "--out", "o"]) == 2
    assert "rdt evaluate: key 'checkpoint' is required" in capsys.readouterr().err
    assert cli.main(["evaluate", "--checkpoint", "ck", "--out", "o"]) == 2
    assert "give --horizon" in capsys.readouterr().err


def test_the_tasks_are_resolved_once_from_the_checkpoints_training(tmp_path):
    (tmp_path / "pipeline.json").write_text('{"suite": "libero_object", "tasks": ["0", "2"]}')
    cfg, tasks = ec.resolve_tasks(request(["--checkpoint", str(tmp_path), "--horizon", "8", "--out", "o"]))
    assert cfg.suite == "libero_object" and [t.name for t in tasks] == cfg.tasks
    assert tasks == suites.select_tasks("libero_object", ["0", "2"])
    settings = cfg.settings(tasks, 8, {"image_size": 64})
    assert (settings.tasks, settings.max_steps, settings.camera_size) == (tuple(cfg.tasks), 280, 64)
    other = request(["--checkpoint", str(tmp_path), "--suite", "libero_goal", "--horizon", "8", "--out", "o"])
    assert len(ec.resolve_tasks(other)[1]) == len(suites.tasks("libero_goal"))  # another suite: all its tasks


def test_every_key_of_the_document_is_documented():
    repo = Path(__file__).resolve().parents[1]
    readme, formats = (repo / "config" / "README.md").read_text(), (repo / "docs" / "formats.md").read_text()
    for key, flag in ec.FLAGS.items():
        assert f"`{key}` (`{flag}`" in readme or (f"`{key}`" in readme and f"`{flag}`" in readme), key
        assert f"`{key}`" in formats, key
    assert set(ec.FLAGS) == set(ec.EvalConfig.__dataclass_fields__)
    flags = {a for action in cli.command_parser("evaluate", ev)._actions for a in action.option_strings}
    assert set(ec.FLAGS.values()) <= flags


def test_the_command_runs_the_document_with_the_flags_over_it(tmp_path, monkeypatch):
    """The workflow's command line: `rdt evaluate --config eval-<key>.yaml --envs K --out DIR --summary-name NAME`;
    the run gets the document's settings (--envs from the flag), success goes where the document says (TensorBoard
    and, with report_to wandb, W&B in the training's group). The simulator run is a stand-in here
    (tests/test_evaluate.py runs it)."""
    import torch

    from rdt.encoders import load_text_encoder
    from rdt.lang import encode_instructions
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    config = RDTConfig.preset("tiny")
    pipeline = {"text_encoder": "tiny", "vision_encoder": "tiny", "image_size": 64, "control_frequency": 20}
    pipeline |= {"action_space": "delta_eef", "step": 7, "run": "k1", "identity": "abc"}
    with torch.random.fork_rng():
        checkpoint = save_checkpoint(tmp_path / "ck", build_runner(config, seed=0), config, pipeline=pipeline)
    tasks = suites.select_tasks("libero_object", ["0"])
    lang = tmp_path / "tasks.safetensors"
    encode_instructions([t.language for t in tasks], load_text_encoder("tiny"), lang)
    doc = tmp_path / "eval-k.yaml"
    values = {"checkpoint": str(checkpoint), "lang": str(lang), "suite": "libero_object", "tasks": ["0"]}
    values |= {"exec_horizons": [8], "episodes_per_task": 2, "max_steps": 12, "seed": 3, "videos_per_task": 0}
    values |= {"tensorboard": str(tmp_path / "tb"), "report_to": "wandb", "run": "main", "device": "cpu"}
    doc.write_text(ec.dump(values))
    ran, logged = [], []

    def fake_evaluate(policy, settings, out, lang, info=None, stats=None, summary_name=None):
        ran.append((settings, out, summary_name, info))
        overall = {"success_rate": 0.5, "episodes": 2, "errors": 0, "successes": 1}
        return {"step": info["step"], "horizon": settings.horizon, "overall": overall}

    class FakeWandb:
        def __init__(self, project, group, run, step, horizons, config=None):
            logged.append(("init", project, group, run))

        def log(self, summary):
            logged.append(("log", summary["step"], summary["horizon"], summary["overall"]["success_rate"]))

        def finish(self):
            logged.append(("finish",))

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(ev, "WandbLog", FakeWandb)
    out = tmp_path / "h8"
    argv = ["evaluate", "--config", str(doc), "--envs", "2", "--out", str(out), "--summary-name", "summary-k.json"]
    assert cli.main(argv) == 0
    [(settings, folder, name, info)] = ran
    assert (folder, name) == (out, "summary-k.json")
    assert settings.tasks == (tasks[0].name,) and (settings.episodes, settings.horizon, settings.max_steps) == (
        2,
        8,
        12,
    )
    assert (settings.envs, settings.seed, settings.camera_size, settings.videos_per_task) == (2, 3, 64, 0)
    assert info["identity"] == "training:abc" and info["lang"] == str(lang)
    assert logged == [("init", None, "k1-abc", "main"), ("log", 7, 8, 0.5), ("finish",)]
    assert list((tmp_path / "tb").iterdir())  # the TensorBoard scalars
