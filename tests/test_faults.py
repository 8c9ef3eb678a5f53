"""Faults without loss (issue 11): no deleted history, no corrupt file under a final name, one clear line (exit 2)
for a full or read-only disk, diverged or broken weights refused, and the smaller parse-time checks.

Full and read-only folders are real: small tmpfs mounts (root, as in CI); where mounting is impossible the test
injects the OSError instead."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train_helpers as h
from rdt import layout
from rdt.errors import UserError
from rdt.training import command, run_folder
from rdt.training import trainer as trainer_module


@pytest.fixture(scope="module")
def data(train_data, module_torch_thread):
    return train_data


# ------------------------------------------------------------------------------------------------ mounts
def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode
        == 0
    )


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A tmpfs at ``folder`` (``size=...``, ``ro``); skips the test when mounting is not possible."""
    if not _mount(folder, options):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def full_dir(tmp_path):
    """A 1 MiB tmpfs, filled up."""
    with mounted(tmp_path / "full", "size=1m") as folder:
        with open(folder / "filler", "wb", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
        yield folder


@pytest.fixture
def readonly_dir(tmp_path):
    with mounted(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def rdt_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rdt", *map(str, args)],
        cwd=h.REPO,
        env=h.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with exit 2 and a single ``error:`` line (no traceback) containing ``words``."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ================================================================================================ 1. pruning
def test_segment_ending_below_existing_checkpoints_keeps_them_and_the_metrics(data, tmp_path):
    """Defect 1: limit 1, train to 6, then a segment to 2. Before: checkpoint-2 was pruned right after being
    written (checkpoint-6 kept as 'the newest'), the export failed with a misleading error, and metrics.csv was cut
    from 6 rows to 2. Now: checkpoint-2 is kept and exported, checkpoint-6 too, and metrics.csv keeps 6 rows."""
    out = tmp_path / "run"
    cfg = h.load_run(data, checkpointing_period=2, checkpoints_total_limit=1)
    command.train_segment(cfg, 6, out)
    assert [s for s, _ in run_folder.list_checkpoints(out)] == [6]
    before = run_folder.read_metrics(out)
    assert [int(r["step"]) for r in before] == list(range(1, 7))

    command.train_segment(cfg, 2, out)
    assert [s for s, _ in run_folder.list_checkpoints(out)] == [2, 6]
    assert layout.export_dir(out, 2).is_dir() and layout.export_dir(out, 6).is_dir()
    after = run_folder.read_metrics(out)
    assert [int(r["step"]) for r in after] == list(range(1, 7))
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in before], rel=1e-4)
    # the rows the segment (restarting at step 0) set aside were saved before they were removed from metrics.csv
    history = (out / run_folder.METRICS_HISTORY).read_text().splitlines()
    assert history[0].startswith("step,") and [ln.split(",")[0] for ln in history[1:]] == ["1", "2", "3", "4", "5", "6"]

    # a later segment past the newer checkpoint prunes normally again (limit 1: only the newest stays)
    command.train_segment(cfg, 8, out)
    assert [s for s, _ in run_folder.list_checkpoints(out)] == [8]
    assert [int(r["step"]) for r in run_folder.read_metrics(out)] == list(range(1, 9))


def test_prune_never_deletes_the_checkpoint_just_written(tmp_path):
    for step in (2, 4, 10, 12):
        folder = run_folder.checkpoint_dir(tmp_path, step)
        folder.mkdir(parents=True)
        (folder / run_folder.STATE_FILE).write_text(f'{{"fingerprint": "f", "step": {step}}}')
    gone = run_folder.prune_checkpoints(tmp_path, "f", limit=1, written=4)
    assert [p.name for p in gone] == ["checkpoint-2"]
    assert [s for s, _ in run_folder.list_checkpoints(tmp_path)] == [4, 10, 12]
    gone = run_folder.prune_checkpoints(tmp_path, "f", limit=2, written=12)
    assert [s for s, _ in run_folder.list_checkpoints(tmp_path)] == [10, 12]


# ================================================================================================ 3. videos
def _frames(n: int = 12, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_video_on_a_full_disk_is_an_error_and_leaves_no_file(full_dir):
    """Defect 3: ffmpeg reported 'No space left', imageio's close did not raise, and the truncated MP4 was renamed
    to its final name. Now the written file is decoded and counted before the rename."""
    from rdt.utils.atomic import disk_error_line
    from rdt.video import write_video

    target = full_dir / "videos" / "task__init0__success.mp4"
    target.parent.mkdir()
    # 16 KiB free: ffmpeg writes most of the stream, fails at the end, and closing the writer does not raise
    os.truncate(full_dir / "filler", (full_dir / "filler").stat().st_size - 16 * 1024)
    with pytest.raises(OSError) as info:
        write_video(target, _frames(40), fps=20)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert disk_error_line(info.value).startswith(f"{target}: no space left on device")
    assert list(target.parent.iterdir()) == []  # nothing under the final (or a temporary) name


def test_video_check_rejects_a_truncated_or_short_file(tmp_path):
    from rdt.video import check_video, read_video, write_video

    good = write_video(tmp_path / "good.mp4", _frames(), fps=20)
    assert read_video(good).shape == (12, 64, 64, 3)
    check_video(good, good, 12)
    with pytest.raises(OSError, match="has 12 of 13 frames"):
        check_video(tmp_path / "final.mp4", good, 13)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(OSError) as info:
        check_video(tmp_path / "final.mp4", cut, 12)
    assert info.value.errno == errno.EIO and "final.mp4" in str(info.value)
    # a corrupt video left by older code: the report's reader names it instead of a traceback
    with pytest.raises(UserError, match=rf"{cut}: unreadable video .*delete it and rerun the evaluation"):
        read_video(cut)


# ================================================================================================ 4. full / read-only
def _command(name: str, data: dict[str, str], out_folder: Path, tmp_path: Path) -> list[str]:
    """Argument lists of each command writing into ``out_folder`` (inputs are valid and elsewhere)."""
    run = h.write_run(tmp_path / "run.yaml", data)
    return {
        "convert": [
            "convert",
            "--demos",
            str(Path(data["data"]).parent / "demos"),
            "--out",
            str(out_folder / "data.h5"),
        ],
        "stats": ["stats", "--data", data["data"], "--out", str(out_folder / "dataset_stat.json")],
        "encode": [
            "encode",
            "--data",
            data["data"],
            "--text-encoder",
            "tiny",
            "--out",
            str(out_folder / "lang.safetensors"),
        ],
        "train": ["train", "--config", str(run), "--until-step", "2", "--out", str(out_folder / "run")],
        "evaluate": [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "unused"),
            "--lang",
            data["lang"],
            "--horizon",
            "8",
            "--suite",
            "libero_90",
            "--tasks",
            "0",
            "--episodes",
            "1",
            "--out",
            str(out_folder / "eval"),
        ],
    }[name]


COMMANDS = ("convert", "stats", "encode", "train", "evaluate")


def _cli_error(argv: list[str], capsys) -> str:
    from rdt import cli

    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_output_folder_is_one_line_before_any_work(
    command, data, readonly_dir, tmp_path, capsys, monkeypatch
):
    """Defect 4: a read-only output folder ended in a raw OSError traceback (train and evaluate only after loading
    the model). Now: one line naming the folder and the cause, exit 2, before the command's own code runs."""
    from rdt.evaluation.policy import Policy

    monkeypatch.setattr(trainer_module, "Trainer", None)  # proves that nothing was loaded: calling them fails
    monkeypatch.setattr(Policy, "from_checkpoint", None)
    line = _cli_error(_command(command, data, readonly_dir, tmp_path), capsys)
    assert str(readonly_dir) in line and "read-only file system" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_full_output_folder_is_one_line_before_any_work(command, data, full_dir, tmp_path, capsys, monkeypatch):
    from rdt.evaluation.policy import Policy

    monkeypatch.setattr(trainer_module, "Trainer", None)
    monkeypatch.setattr(Policy, "from_checkpoint", None)
    line = _cli_error(_command(command, data, full_dir, tmp_path), capsys)
    assert str(full_dir) in line and "no space left on device" in line
    assert sorted(p.name for p in full_dir.iterdir()) == ["filler"]


@pytest.fixture
def tmpfs(tmp_path, request):
    """An empty tmpfs of ``request.param`` KiB."""
    with mounted(tmp_path / "small", f"size={request.param}k") as folder:
        yield folder


def _big_demos(folder: Path) -> Path:
    """One demo file whose conversion needs about 1.4 MB."""
    from official_layout import write_demo_file

    folder.mkdir()
    task = "KITCHEN_SCENE7_open_the_microwave"
    write_demo_file(folder / f"{task}_demo.hdf5", task, None, [40, 36, 30], seed=0, image_size=48)
    return folder


@pytest.mark.parametrize("tmpfs", [1300], indirect=True)
def test_convert_that_runs_out_of_space_midway_stops_cleanly(tmpfs, tmp_path):
    """Defect 4: convert onto a disk that fills up during the write crashed the interpreter (exit 139) after a
    cascade of h5py tracebacks. Now: the space for each episode is checked before HDF5 writes it."""
    proc = rdt_cli("convert", "--demos", _big_demos(tmp_path / "demos"), "--out", tmpfs / "data.h5")
    line = one_line_error(proc, str(tmpfs / "data.h5"), "no space left on device")
    assert "h5py" not in proc.stderr and list(tmpfs.iterdir()) == [], line


@pytest.mark.parametrize("tmpfs", [1300], indirect=True)
def test_convert_whose_disk_fills_after_the_space_check_does_not_crash(tmpfs, tmp_path):
    """The same when the disk fills behind the space check (another process): HDF5 itself fails; still one line,
    exit 2, no file, no segmentation fault and no h5py tracebacks."""
    script = (
        "import sys; from rdt.data import writer; writer._check_space = lambda *a: None; "
        "from rdt import cli; sys.exit(cli.main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "convert",
            "--demos",
            str(_big_demos(tmp_path / "demos")),
            "--out",
            str(tmpfs / "data.h5"),
        ],
        cwd=h.REPO,
        env=h.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = one_line_error(proc, str(tmpfs / "data.h5"), "no space left on device")
    assert "h5py" not in proc.stderr and list(tmpfs.iterdir()) == [], line


@pytest.mark.parametrize("tmpfs", [3072], indirect=True)
def test_train_that_runs_out_of_space_at_a_checkpoint_names_it(tmpfs, data, tmp_path, capsys):
    """Defect 4: train on a full disk ended in torch's 'inline_container.cc ... unexpected pos' without the words
    'no space'. Now: one line naming the checkpoint and the cause; no checkpoint under its final name."""
    run = h.write_run(tmp_path / "run.yaml", data, checkpointing_period=2)
    out = tmpfs / "run"
    line = _cli_error(["train", "--config", str(run), "--until-step", "2", "--out", str(out)], capsys)
    assert "no space left on device" in line and str(out) in line
    assert run_folder.list_checkpoints(out) == [] and not (out / layout.EXPORT).exists()


def test_disk_error_line_reads_hdf5_messages():
    from rdt.utils.atomic import disk_error_line

    e = OSError(
        "Unable to synchronously create file (unable to open file: name = '/x/data.h5', errno = 30, "
        "error message = 'Read-only file system', flags = 13, o_flags = 242)"
    )
    assert disk_error_line(e) == "/x/data.h5: read-only file system"
    assert disk_error_line(OSError(errno.ENOENT, "No such file", "/x")) is None
    wrapped = RuntimeError("unexpected pos")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/x/model.safetensors")
    assert disk_error_line(wrapped) == "/x/model.safetensors: no space left on device"


# ================================================================================================ 5. broken weights
def test_diverged_run_stops_with_a_clear_error_and_exports_nothing(data, tmp_path, monkeypatch):
    """Defect 5: a diverged run (every step 'non-finite gradient norm; weights not updated') exited 0 and exported
    a checkpoint. Now max_nonfinite_steps consecutive skipped steps stop it; nothing after the last good
    checkpoint is written."""
    original = trainer_module.Trainer.accumulate

    def poisoned(self, micro_batches):
        result = original(self, micro_batches)
        if self.step >= 2:  # steps 3, 4, ... get a NaN gradient
            next(self.runner.parameters()).grad.fill_(float("nan"))
        return result

    monkeypatch.setattr(trainer_module.Trainer, "accumulate", poisoned)
    out = tmp_path / "run"
    cfg = h.load_run(data, checkpointing_period=2, max_nonfinite_steps=3)
    with pytest.raises(
        UserError,
        match=r"training diverged: 3 consecutive optimizer steps \(3-5\) had a "
        r"non-finite gradient norm .*nothing after step 4 was saved or exported",
    ):
        command.train_segment(cfg, 8, out)
    assert [s for s, _ in run_folder.list_checkpoints(out)] == [2, 4]  # 4: the weights of step 2, not updated
    assert not (out / layout.EXPORT).exists()
    # 0 = never stop: the run finishes (weights of the skipped steps not updated)
    command.train_segment(h.load_run(data, checkpointing_period=2, max_nonfinite_steps=0), 4, tmp_path / "on")
    assert layout.export_dir(tmp_path / "on", 4).is_dir()


def _tiny_checkpoint(folder: Path) -> Path:
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    runner = build_runner(RDTConfig.preset("tiny"), seed=0)
    return save_checkpoint(folder, runner, runner.config, ema_state_dict=runner.state_dict())


def test_verify_checkpoint_checks_every_weights_file_and_refuses_non_finite_values(tmp_path, capsys):
    """Defect 5: NaN weights passed verify-checkpoint, and only the non-EMA weights were checked by default, so a
    truncated EMA file (what evaluate loads) passed. Now every weights file is loaded and must be finite."""
    from safetensors.torch import load_file, save_file

    from rdt import cli

    folder = _tiny_checkpoint(tmp_path / "ckpt")
    assert cli.main(["verify-checkpoint", str(folder)]) == 0
    assert "weights: model, ema; all keys and shapes match, all values finite" in capsys.readouterr().out

    ema = folder / "ema" / "model.safetensors"
    good = ema.read_bytes()
    ema.write_bytes(good[: len(good) // 2])
    line = _cli_error(["verify-checkpoint", str(folder)], capsys)
    assert str(ema) in line and "cannot read weights" in line
    assert cli.main(["verify-checkpoint", str(folder), "--weights", "model"]) == 0
    ema.write_bytes(good)

    model = folder / "model.safetensors"
    tensors = load_file(str(model))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name][...] = float("nan")
    save_file(tensors, str(model), metadata={"format": "pt"})
    line = _cli_error(["verify-checkpoint", str(folder)], capsys)
    assert str(model) in line and "non-finite values (NaN or inf) in 1 tensor(s)" in line and name in line


# ================================================================================================ 6. smaller
def test_a_second_trainer_on_the_same_run_folder_is_refused(data, tmp_path, capsys):
    """Defect 6: nothing stopped two trainers from sharing one run folder. Now the second gets one line naming
    the holder and exit 2, before loading anything."""
    run = h.write_run(tmp_path / "run.yaml", data)
    out = tmp_path / "run"
    with run_folder.run_lock(out):
        line = _cli_error(["train", "--config", str(run), "--until-step", "1", "--out", str(out)], capsys)
    assert f"{out}: another process is training into this run folder (pid {os.getpid()} on" in line
    assert not (out / run_folder.CHECKPOINTS).exists()
    with run_folder.run_lock(out):  # released when the holder ends
        pass


LAUNCHER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "from rdt.training.preemption import stop_with_launcher; "
                          "stop_with_launcher(); import time; print('ready', flush=True); time.sleep(120)"],
                         stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(120)
"""


def test_killing_the_launcher_stops_the_trainer(tmp_path):
    """Defect 6: killing `accelerate launch` left the trainer running. Now a trainer started by a launcher gets
    SIGTERM when the launcher dies (and stops like a preempted run). Here a stand-in launcher named accelerate is
    killed with SIGKILL, so it cannot forward anything."""
    import signal
    import time

    stub = tmp_path / "accelerate_launch_stub.py"
    stub.write_text(LAUNCHER)
    launcher = subprocess.Popen([sys.executable, str(stub)], cwd=h.REPO, env=h.env(), stdout=subprocess.PIPE, text=True)
    try:
        child = int(launcher.stdout.readline())
        launcher.kill()
        launcher.wait(timeout=30)
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and Path(f"/proc/{child}").exists()
            and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
        ):
            time.sleep(0.1)
        alive = Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, "the trainer outlived its launcher"
    finally:
        if launcher.poll() is None:
            launcher.kill()


PLAN_BASE = {
    "demos": {
        "source": "expert",
        "suite": "libero_object",
        "tasks": ["pick_up_the_alphabet_soup_and_place_it_in_the_basket"],
        "episodes_per_task": 1,
    },
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
    "eval": {"exec_horizons": [8], "episodes_per_task": 1, "max_steps": 12},
    "runs": {"default": {}},
}


def _plan(**sections):
    import copy

    from rdt.plan import Plan

    cfg = copy.deepcopy(PLAN_BASE)
    cfg.update(sections)
    return Plan(cfg)


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"runs": {}}, r"config: runs is empty and evaluate_checkpoints has no entry, so there is nothing to train"),
        (
            {"runs": {"big": {"train": {"gpus": 3}}}},
            r"runs.big.train: effective_batch_size=4 is not divisible by per_device_batch_size=2 x 3 process\(es\)",
        ),
        (
            {"runs": {"odd": {"train": {"effective_batch_size": 6, "per_device_batch_size": 4}}}},
            r"runs.odd.train: effective_batch_size=6 is not divisible by per_device_batch_size=4 x 1 process",
        ),
        (
            {"runs": {"many": {"eval": {"episodes_per_task": 51}}}},
            r"runs.many.eval: episodes_per_task=51; each task has 50 init states",
        ),
        (
            {"runs": {"late": {"demos": {"episodes_per_task": 30}}}},
            r"runs.late.demos: 30 demos per task with max_attempts=30 from init state 25 on do not fit",
        ),
    ],
)
def test_numbers_that_fail_late_are_errors_at_parse_time(sections, message):
    """Defect 6: `runs: {}` failed inside the report job with an argparse error; a batch that does not divide and
    `episodes_per_task: 51` were caught only after earlier stages ran. Now: errors when the plan is made."""
    with pytest.raises(UserError, match=message):
        _plan(**sections)
    _plan()  # the base itself is fine


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    """Defect 6: a YAML syntax error named no file and line."""
    from rdt.utils.files import read_yaml

    bad = tmp_path / "config.yaml"
    bad.write_text("runs:\n  a: {train: {max_steps: 3}\n  b: 1\n")
    with pytest.raises(
        UserError,
        match=rf"^{bad}, line 3, column 3: not valid YAML \(while parsing a flow "
        r"mapping; expected ',' or '}', but got '<scalar>'\)$",
    ):
        read_yaml(bad)


def test_an_encoder_flag_that_contradicts_pipeline_json_is_refused(tmp_path):
    """Defect 6: a same-size but different --vision-encoder was accepted without comparing with pipeline.json."""
    from rdt.evaluation.policy import Policy
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    runner = build_runner(RDTConfig.preset("tiny"), seed=0)
    folder = save_checkpoint(
        tmp_path / "ckpt",
        runner,
        runner.config,
        pipeline={"vision_encoder": "tiny", "text_encoder": "tiny", "control_frequency": 20},
    )
    with pytest.raises(
        UserError,
        match=r"trained with vision_encoder 'tiny' \(pipeline.json\), not 'tiny-b'; "
        r"leave out --vision-encoder",
    ):
        Policy.from_checkpoint(folder, vision_encoder="tiny-b", device="cpu")
    with pytest.raises(UserError, match="trained with control_frequency 20"):
        Policy.from_checkpoint(folder, control_frequency=10, device="cpu")
    policy = Policy.from_checkpoint(
        folder, vision_encoder="tiny", text_encoder="tiny", control_frequency=20, device="cpu"
    )
    assert policy.vision.name == "tiny" and policy.control_frequency == 20


def test_evaluate_refuses_non_finite_weights_before_any_simulator(tmp_path, capsys, monkeypatch):
    """Defect 5: NaN weights evaluated as ordinary failures. Now evaluate stops with one line naming the checkpoint
    (no simulator is started)."""
    from safetensors.torch import load_file, save_file

    from rdt.encoders import load_text_encoder
    from rdt.evaluation import command
    from rdt.lang import encode_instructions
    from rdt.libero import suites

    folder = _tiny_checkpoint(tmp_path / "ckpt")
    (folder / "pipeline.json").write_text(
        '{"vision_encoder": "tiny", "text_encoder": "tiny", "control_frequency": 20, "image_size": 16}'
    )
    ema = folder / "ema" / "model.safetensors"
    tensors = load_file(str(ema))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[-1]
    tensors[name][...] = float("inf")
    save_file(tensors, str(ema), metadata={"format": "pt"})
    task = suites.select_tasks("libero_90", ["0"])[0]
    lang = tmp_path / "lang.safetensors"
    encode_instructions([task.language], load_text_encoder("tiny"), lang)
    monkeypatch.setattr(command, "evaluate", None)  # reaching the episodes would fail here
    line = _cli_error(
        [
            "evaluate",
            "--checkpoint",
            str(folder),
            "--lang",
            str(lang),
            "--horizon",
            "8",
            "--suite",
            "libero_90",
            "--tasks",
            "0",
            "--episodes",
            "1",
            "--out",
            str(tmp_path / "ev"),
        ],
        capsys,
    )
    assert f"{folder} (ema weights): non-finite values (NaN or inf) in 1 tensor(s): {name}" in line


def test_metrics_rows_set_aside_keep_their_own_columns(tmp_path):
    """Rows set aside keep the columns of the metrics.csv they came from (written by another version, say);
    a history file with other columns is not mixed with them."""
    (tmp_path / run_folder.METRICS).write_text("step,loss,old_column\n1,0.5,a\n2,0.4,b\n3,0.3,c\n")
    run_folder.MetricsLog(tmp_path, start_step=1).close()
    history = (tmp_path / run_folder.METRICS_HISTORY).read_text().splitlines()
    assert history[0] == "step,loss,old_column,set_aside_time"
    assert [ln.rsplit(",", 1)[0] for ln in history[1:]] == ["2,0.4,b", "3,0.3,c"]
    assert [r["step"] for r in run_folder.read_metrics(tmp_path)] == [1.0]
    empty = "," * (len(run_folder.METRIC_COLUMNS) - 2)
    (tmp_path / run_folder.METRICS).write_text(",".join(run_folder.METRIC_COLUMNS) + f"\n1,0.5{empty}\n")
    run_folder.MetricsLog(tmp_path, start_step=0).close()
    second = (tmp_path / "metrics.history.2.csv").read_text().splitlines()
    assert second[0] == ",".join(run_folder.METRIC_COLUMNS) + ",set_aside_time" and second[1].startswith("1,0.5,")
    assert (tmp_path / run_folder.METRICS_HISTORY).read_text().splitlines() == history


def test_a_file_in_the_way_of_the_output_folder_is_one_line(data, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    line = _cli_error(["stats", "--data", data["data"], "--out", str(tmp_path / "taken" / "s.json")], capsys)
    assert line == (
        f"error: --out {tmp_path}/taken/s.json: cannot write into {tmp_path}/taken (a file is in the way of the folder)"
    )
