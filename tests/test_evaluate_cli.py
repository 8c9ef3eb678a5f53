"""`python -m rdt evaluate` as one command for any checkpoint (issue 12): several horizons per call (each into
--out/h<H>), --episodes defaulting to the LIBERO convention (50), language encoded on the fly without --lang.
No simulator here: parsing, output folders and the on-the-fly language table with the tiny encoder."""

from pathlib import Path

from rdt import cli
from rdt.evaluation import command as ev
from rdt.libero import suites


def parse(argv):
    return cli.command_parser("evaluate", ev).parse_args(argv)


def test_several_horizons_and_the_episode_default():
    args = parse(["--checkpoint", "ck", "--horizon", "8", "16", "64", "--out", "o"])
    assert args.horizon == [8, 16, 64] and args.episodes == 50 == ev.DEFAULT_EPISODES and args.lang is None
    one = parse(["--checkpoint", "ck", "--lang", "l", "--horizon", "8", "--episodes", "3", "--out", "o"])
    assert one.horizon == [8]
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

    from rdt.evaluation.command import log_success

    for step, successes in ((100, 1), (200, 3)):
        summary = {"step": step, "horizon": 8, "overall": {"success_rate": successes / 4, "episodes": 4, "errors": 0}}
        assert log_success(tmp_path / "tb", summary)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("success/H8")] == [(100, 0.25), (200, 0.75)]
    assert [e.value for e in events.Scalars("episodes/H8")] == [4, 4]
