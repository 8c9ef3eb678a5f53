"""One identity per artefact, observed on outcomes: a training's identity covers its settings, data and training
code (a code edit retrains, a pinned code fingerprint keeps the checkpoints), a segment continues only an export
of its own training, and an evaluation record is kept only for the same checkpoint identity, evaluation code and
task instruction (a retrained model exported to the same folder runs every episode again)."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

import train_helpers as h
from rdt import layout, train_config
from rdt.errors import UserError
from rdt.evaluation.ledger import checkpoint_identity
from rdt.evaluation.run import evaluate
from rdt.evaluation.settings import Settings
from rdt.libero import suites
from rdt.training import command, run_folder
from rdt.utils.hashing import file_sha256 as file_digest
from test_workers import ScriptedSim

EDITED = "0123456789abcdef"


@pytest.fixture(scope="module")
def data(train_data, module_torch_thread):
    return train_data


def _pipeline(out, step):
    return json.loads((layout.export_dir(out, step) / "pipeline.json").read_text())


def test_a_training_code_edit_retrains_and_a_pinned_fingerprint_keeps_the_checkpoints(
    data, tmp_path, monkeypatch, capsys
):
    cfg = h.load_run(data, checkpointing_period=2)
    out = tmp_path / "run"
    command.train_segment(cfg, 2, out)
    command.train_segment(cfg, 4, out, previous_export=layout.export_dir(out, 2))
    original = _pipeline(out, 4)
    code = train_config.code_fingerprint()
    assert original["identity"] == cfg.fingerprint() and original["train_code"] == code
    assert h.trainer_state(run_folder.checkpoint_dir(out, 4))["fingerprint"] == original["identity"]
    capsys.readouterr()

    monkeypatch.setattr(train_config, "code_fingerprint", lambda: EDITED)  # the training code was edited
    # declared as not changing the weights (the pin): the checkpoints stay valid, nothing is trained
    pinned = h.load_run(data, checkpointing_period=2, code_fingerprint=code)
    assert pinned.fingerprint() == original["identity"]
    command.train_segment(pinned, 4, out, previous_export=layout.export_dir(out, 2))
    assert "checkpoint-4 exists with these settings and code" in capsys.readouterr().out
    assert _pipeline(out, 4)["identity"] == original["identity"]

    # not pinned: another identity. A segment refuses to continue an export of the old code ...
    assert cfg.fingerprint() != original["identity"]
    with pytest.raises(
        UserError,
        match=r"step-2: made by a training of identity .* \(other settings, data or "
        r"training code\)",
    ):
        command.train_segment(cfg, 4, out, previous_export=layout.export_dir(out, 2))
    # ... and the first segment trains from the initial weights instead of re-exporting the old checkpoint
    command.train_segment(cfg, 2, out)
    text = capsys.readouterr().out
    assert "ignoring" in text and "from random init" in text and "exists with" not in text
    command.train_segment(cfg, 4, out, previous_export=layout.export_dir(out, 2))
    assert "from checkpoint-2" in capsys.readouterr().out
    for step in (2, 4):
        assert h.trainer_state(run_folder.checkpoint_dir(out, step))["fingerprint"] == cfg.fingerprint()
        assert _pipeline(out, step)["identity"] == cfg.fingerprint() and _pipeline(out, step)["train_code"] == EDITED
    assert [int(r["step"]) for r in run_folder.read_metrics(out)] == [1, 2, 3, 4]


class ZeroPolicy:
    def act(self, lang_embeds, images, image_mask, states, state_mask, noise_seeds=None):
        return np.zeros((len(lang_embeds), 64, 128), dtype=np.float32)


def test_a_retrained_model_in_the_same_folder_runs_every_episode_again(tmp_path):
    tasks = suites.tasks("libero_goal")[:3]
    lang = {t.name: np.full((3, 4), float(i)) for i, t in enumerate(tasks)}
    settings = Settings(
        suite="libero_goal",
        tasks=(tasks[0].name, tasks[1].name),
        episodes=2,
        horizon=8,
        max_steps=16,
        envs=1,
        seed=0,
        camera_size=8,
        videos_per_task=0,
    )
    info = {
        "checkpoint": "/results/train/k/export/step-2",
        "step": 2,
        "weights": "ema",
        "identity": "training:aaaa",
        "code": "c1",
    }
    out = tmp_path / "h8"

    def run(s=settings, **changes):
        return evaluate(ZeroPolicy(), s, out, lang, info={**info, **changes}, sim_factory=partial(ScriptedSim))

    assert run()["episodes_this_run"] == 4
    assert run()["episodes_this_run"] == 0  # same checkpoint, settings and code: resumed, nothing
    retrained = run(identity="training:bbbb")  # same path, another training
    assert (retrained["episodes_this_run"], retrained["episodes_from_earlier_runs"]) == (4, 0)
    assert run(identity="training:bbbb", code="c2")["episodes_this_run"] == 4  # evaluation code edited
    # adding a task runs only that task's episodes: the others' records stay valid
    more = Settings(**{**settings.__dict__, "tasks": tuple(t.name for t in tasks)})
    added = run(more, identity="training:bbbb", code="c2")
    assert (added["episodes_this_run"], added["episodes_from_earlier_runs"]) == (2, 4)


def test_checkpoint_identity_is_the_training_identity_or_a_hash_of_the_weights(tmp_path):
    from rdt.model.checkpoint import save_checkpoint
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    config = RDTConfig.preset("tiny")
    folder = save_checkpoint(tmp_path / "elsewhere", build_runner(config, seed=0), config)
    first = checkpoint_identity(folder, {}, "model")
    assert first == f"sha256:{file_digest(folder / 'model.safetensors')}"
    save_checkpoint(folder, build_runner(config, seed=1), config)  # other weights, same folder
    assert checkpoint_identity(folder, {}, "model") != first
    assert checkpoint_identity(folder, {"identity": "abc"}, "model") == "training:abc"


def test_code_fingerprints_cover_the_package_inits_python_runs_on_import(tmp_path, monkeypatch):
    """Importing rdt.model.runner runs rdt/__init__.py and rdt/model/__init__.py first: an edit there changes the
    fingerprint of every stage that imports the package (issue 20: it did not)."""
    import shutil

    from rdt import fingerprint

    assert {"rdt", "rdt.model", "rdt.model.runner"} <= set(fingerprint.closure("rdt.model.runner"))
    # on a copy of the package: edit rdt/model/__init__.py and the evaluation's fingerprint changes
    copy = tmp_path / "rdt"
    shutil.copytree(fingerprint.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "PACKAGE_ROOT", copy)
    fingerprint._parsed.cache_clear()
    before = fingerprint.fingerprint("rdt.evaluation.command")
    init = copy / "model" / "__init__.py"
    init.write_text(init.read_text() + "\nDEFAULT_SOMETHING = 1\n")
    fingerprint._parsed.cache_clear()
    assert fingerprint.fingerprint("rdt.evaluation.command") != before
    fingerprint._parsed.cache_clear()
