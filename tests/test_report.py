"""`python -m rdt report` on a results tree in the workflow's layout: figures, tables, audit and provenance."""
import csv
import json

import numpy as np
import pytest

from rdt.cli import main as cli
from rdt.evaluate import success_counts
from rdt.video import video_name

TASKS = ["pick_up_the_alphabet_soup_and_place_it_in_the_basket", "pick_up_the_cream_cheese_and_place_it_in_the_basket"]
# successes out of 4 episodes per task: {step: {horizon: (task0, task1)}}
OUTCOMES = {2: {8: (1, 0), 64: (0, 0)}, 4: {8: (4, 3), 64: (1, 0)}, 6: {8: (2, 2), 64: (0, 1)}}


def write_mp4(path, frames):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=20, macro_block_size=2)


def write_run(root, name, gpus, effective_batch):
    run = root / name
    episodes_per_task = 4
    for step, by_h in OUTCOMES.items():
        for h, wins in by_h.items():
            out = run / "eval" / f"step-{step}" / f"h{h}"
            out.mkdir(parents=True)
            records = [{"task": t, "suite": "libero_object", "init_state": i, "horizon": h, "step": step,
                        "success": i < wins[k], "steps": 10, "seconds": 0.1, "error": None}
                       for k, t in enumerate(TASKS) for i in range(episodes_per_task)]
            (out / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            summary = {"checkpoint": f"{run}/train/export/step-{step}", "step": step, "suite": "libero_object",
                       "horizon": h, "overall": success_counts(records),
                       "tasks": {t: success_counts([r for r in records if r["task"] == t]) for t in TASKS},
                       "device": "cpu", "versions": {"torch": "x"}, "settings": {"episodes": episodes_per_task}}
            (out / "summary.json").write_text(json.dumps(summary))
            frames = [np.full((16, 32, 3), 40 * j, np.uint8) for j in range(5)]
            for k, t in enumerate(TASKS):
                write_mp4(out / "videos" / video_name(t, 0, wins[k] > 0), frames)
    (run / "train").mkdir()
    with open(run / "train" / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "grad_norm", "samples", "sample_mse"])
        for s in range(1, 7):
            w.writerow([s, 1.0 / s, 1e-4 * min(1, s / 3), 0.5, 8 * s, (0.5 / s) if s % 2 == 0 else ""])
    train = {"model": "tiny", "init_from": None, "text_encoder": "tiny", "vision_encoder": "tiny",
             "per_device_batch_size": 4, "effective_batch_size": effective_batch, "lr_warmup_steps": 3,
             "checkpointing_period": 2, "checkpoints_total_limit": 3}
    (run / "settings.json").write_text(json.dumps({"format": "rdt-settings/1", "kind": "run", "gpus": gpus,
                                                   "exec_horizons": [8, 64], "train": train}))
    return run


@pytest.fixture
def results(tmp_path):
    return [write_run(tmp_path, "current", 8, 32), write_run(tmp_path, "improved", 8, 256)]


def test_report_writes_figures_tables_audit_and_provenance(tmp_path, results):
    out = tmp_path / "report"
    assert cli(["report", "--results", *map(str, results), "--out", str(out), "--videos", "2"]) == 0
    for png in ("success_vs_step.png", "heatmap_last.png", "heatmap_best.png", "training.png", "rollouts.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 6 * 3                       # 2 runs x 6 (step, horizon) x (overall + 2 tasks)
    overall = {(r["run"], int(r["step"]), int(r["horizon"])): r for r in rows if r["task"] == "overall"}
    best = overall[("improved", 4, 8)]
    assert (best["successes"], best["episodes"], float(best["success_rate"])) == ("7", "8", 7 / 8)
    lo, hi = float(best["ci95_low"]), float(best["ci95_high"])
    assert 0.4 < lo < 7 / 8 < hi <= 1.0                  # 95% Wilson interval of 7/8
    per_task = [r for r in rows if r["run"] == "current" and r["step"] == "6" and r["horizon"] == "64"]
    assert {r["task"]: r["successes"] for r in per_task} == {"overall": "1", TASKS[0]: "0", TASKS[1]: "1"}

    audit = list(csv.DictReader(open(out / "audit.csv")))
    flags = {(r["run"], r["setting"]): r for r in audit}
    assert flags[("current", "effective batch")]["flag"] == "DEVIATES"
    assert "4 x 1 x 8 = 32" in flags[("current", "effective batch")]["formula"]
    assert flags[("improved", "effective batch")]["flag"] == "ok"
    assert flags[("improved", "exec horizon h64")]["flag"] == "DEVIATES"
    assert flags[("improved", "exec horizon h8")]["flag"] == "ok"

    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["runs"]) == {"current", "improved"}
    assert prov["runs"]["current"]["results"][0]["device"] == "cpu"
    assert prov["report"]["versions"]["torch"]
    assert len(prov["report"]["code_fingerprints"]["rdt.train"]) == 16

    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert len(videos) == 4                              # 2 per run, from the last checkpoint (step 6)
    assert all("step-6" in v for v in videos)
    assert any(v.endswith("__success.mp4") for v in videos) and any(v.endswith("__failure.mp4") for v in videos)


def test_best_checkpoint_is_the_highest_mean_success(results):
    from rdt.report import read_run

    run = read_run(results[0])
    assert run.steps == [2, 4, 6] and run.horizons == [8, 64]
    assert run.best_step() == 4                         # mean over H of 7/8, 1/8
    assert run.result(4, 8).rate(TASKS[0]) == 1.0


def test_missing_results_are_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no evaluation results" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_metrics_file_names_the_file_and_columns(tmp_path, results, capsys):
    (results[0] / "train" / "metrics.csv").write_text("iteration,value\n1,2\n")
    assert cli(["report", "--results", str(results[0]), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "metrics.csv" in err and "'step'" in err
