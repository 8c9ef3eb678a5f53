"""`python -m rdt report` on a results tree in the workflow's layout: figures, tables, audit and provenance."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rdt.cli import main as cli
from rdt.evaluation.ledger import success_counts
from rdt.report import figures
from rdt.report.names import AUDIT_TABLE, FIGURES, PROVENANCE, RESULTS_TABLE, SUMMARY, VIDEOS
from rdt.video import video_name

TASKS = ["pick_up_the_alphabet_soup_and_place_it_in_the_basket", "pick_up_the_cream_cheese_and_place_it_in_the_basket"]
# successes out of 4 episodes per task: {step: {horizon: (task0, task1)}}
OUTCOMES = {2: {8: (1, 0), 64: (0, 0)}, 4: {8: (4, 3), 64: (1, 0)}, 6: {8: (2, 2), 64: (0, 1)}}


def write_mp4(path, frames):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=20, macro_block_size=2)


def write_run(root, name, gpus, effective_batch, outcomes=OUTCOMES):
    run = root / name
    episodes_per_task = 4
    for step, by_h in outcomes.items():
        for h, wins in by_h.items():
            out = run / "eval" / f"step-{step}" / f"h{h}"
            out.mkdir(parents=True)
            records = [
                {
                    "task": t,
                    "suite": "libero_object",
                    "init_state": i,
                    "horizon": h,
                    "step": step,
                    "success": i < wins[k],
                    "steps": 10,
                    "seconds": 0.1,
                    "error": None,
                }
                for k, t in enumerate(TASKS)
                for i in range(episodes_per_task)
            ]
            (out / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            summary = {
                "checkpoint": f"{run}/train/export/step-{step}",
                "step": step,
                "suite": "libero_object",
                "horizon": h,
                "overall": success_counts(records),
                "tasks": {t: success_counts([r for r in records if r["task"] == t]) for t in TASKS},
                "device": "cpu",
                "versions": {"torch": "x"},
                "settings": {"episodes": episodes_per_task},
                "state_range": {
                    "states_checked": 32,
                    "states_far_outside": 28 if h == 64 else 0,
                    "far_per_slot": {"right_gripper_open": 28} if h == 64 else {},
                },
            }
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
    train = {
        "model": "tiny",
        "init_from": None,
        "text_encoder": "tiny",
        "vision_encoder": "tiny",
        "per_device_batch_size": 4,
        "effective_batch_size": effective_batch,
        "lr_warmup_steps": 3,
        "checkpointing_period": 2,
        "checkpoints_total_limit": 3,
    }
    plan = {
        "steps": [2, 4, 6],
        "episodes_per_task": {"2": 4, "4": 4, "6": 4},
        "tasks": 2,
        "max_steps": 12,
        "per_horizon": {
            "8": {"jobs": 3, "episodes": 24, "sim_steps_max": 528, "policy_calls_max": 48, "hours_max": 0.1}
        },
        "total": {"jobs": 3, "episodes": 24, "sim_steps_max": 528, "policy_calls_max": 48, "hours_max": 0.1},
        "rates": {"sim_step_s": 0.2, "source": "constructed"},
        "train": {"samples": 6 * effective_batch, "model_work_ratio_max": 0.5},
    }
    (run / "settings.json").write_text(
        json.dumps(
            {
                "format": "rdt-settings/1",
                "kind": "run",
                "gpus": gpus,
                "exec_horizons": [8, 64],
                "train": train,
                "eval_plan": plan,
            }
        )
    )
    return run


@pytest.fixture
def results(tmp_path):
    return [write_run(tmp_path, "current", 8, 32), write_run(tmp_path, "improved", 8, 256)]


def test_report_writes_figures_tables_audit_and_provenance(tmp_path, results):
    out = tmp_path / "report"
    assert cli(["report", "--results", *map(str, results), "--out", str(out), "--videos", "2"]) == 0
    written = {p.name for p in out.iterdir()}
    assert written == {f.file for f in FIGURES} | {SUMMARY, RESULTS_TABLE, AUDIT_TABLE, PROVENANCE, VIDEOS}, written
    for figure in FIGURES:
        data = (out / figure.file).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, figure.file

    rows = list(csv.DictReader(open(out / RESULTS_TABLE)))
    assert len(rows) == 2 * 6 * 3  # 2 runs x 6 (step, horizon) x (overall + 2 tasks)
    overall = {(r["run"], int(r["step"]), int(r["horizon"])): r for r in rows if r["task"] == "overall"}
    best = overall[("improved", 4, 8)]
    assert (best["successes"], best["episodes"], float(best["success_rate"])) == ("7", "8", 7 / 8)
    lo, hi = float(best["ci95_low"]), float(best["ci95_high"])
    assert 0.4 < lo < 7 / 8 < hi <= 1.0  # 95% Wilson interval of 7/8
    per_task = [r for r in rows if r["run"] == "current" and r["step"] == "6" and r["horizon"] == "64"]
    assert {r["task"]: r["successes"] for r in per_task} == {"overall": "1", TASKS[0]: "0", TASKS[1]: "1"}

    audit = list(csv.DictReader(open(out / AUDIT_TABLE)))
    flags = {(r["run"], r["setting"]): r for r in audit}
    assert flags[("current", "effective batch")]["flag"] == "DEVIATES"
    assert "4 x 1 x 8 = 32" in flags[("current", "effective batch")]["formula"]
    assert flags[("improved", "effective batch")]["flag"] == "ok"
    assert flags[("improved", "exec horizon h64")]["flag"] == "comparison"  # next to H=8: a comparison
    assert flags[("improved", "initial weights")]["flag"] == "DEVIATES"  # random init of a tiny model
    assert flags[("improved", "exec horizon h8")]["flag"] == "ok"

    prov = json.loads((out / PROVENANCE).read_text())
    assert set(prov["runs"]) == {"current", "improved"}
    assert prov["runs"]["current"]["results"][0]["device"] == "cpu"
    assert prov["report"]["versions"]["torch"]
    assert len(prov["report"]["code_fingerprints"]["rdt.training.command"]) == 16
    # the source commit of this checkout, and no absolute path inside the working directory (moved results stay true)
    assert len(prov["report"]["source"]["commit"]) == 40 and isinstance(prov["report"]["source"]["dirty"], bool)

    videos = sorted(p.name for p in (out / VIDEOS).iterdir())
    assert len(videos) == 4  # 2 per run, from the last checkpoint (step 6)
    assert all("step-6" in v for v in videos)
    assert any(v.endswith("__success.mp4") for v in videos) and any(v.endswith("__failure.mp4") for v in videos)


def test_best_checkpoint_is_chosen_on_even_and_reported_on_odd_init_states(results):
    from rdt.report.collect import read_run

    run = read_run(results[0])
    assert run.steps == [2, 4, 6] and run.horizons == [8, 64]
    sel = run.selection()  # pooled over H: even init states 0, 2 of 2 tasks x 2 horizons
    assert sel.selection_rates == {2: 1 / 8, 4: 5 / 8, 6: 3 / 8}
    assert run.best_step() == 4 and sel.report == (3, 8) and sel.last_report == (2, 8)
    h8 = run.selection(8)
    assert h8.best == 4 and h8.report == (3, 4)
    assert run.result(4, 8).rate(TASKS[0]) == 1.0


def test_no_best_checkpoint_when_all_tie(tmp_path):
    from rdt.report.collect import read_run

    zero = {2: {8: (0, 0)}, 4: {8: (0, 0)}}
    run = read_run(write_run(tmp_path, "flat", 0, 4, zero))
    assert run.best_step() is None and "tie at 0%" in run.selection().reason
    out = tmp_path / "report"
    assert cli(["report", "--results", str(run.folder), "--out", str(out)]) == 0
    page = (out / SUMMARY).read_text()
    assert "no best: all 2 checkpoints tie at 0% on the selection half" in page
    assert (out / "heatmap_best.png").stat().st_size > 1000


def test_summary_page_answers_the_questions(tmp_path, results):
    out = tmp_path / "report"
    assert cli(["report", "--results", *map(str, results), "--out", str(out), "--videos", "2"]) == 0
    page = (out / SUMMARY).read_text()
    # headline at the last checkpoint (step 6): H=8 4/8, H=64 1/8 with Wilson intervals
    assert "<td>current</td><td>H=8</td><td>50.0%</td>" in page and "<td>4/8</td><td>10 (10-10)</td>" in page
    # each result row links to its run's settings and to the report's videos of that step and horizon
    assert '<a href="../current/settings.json">settings</a>' in page
    assert '<a href="videos/current__step-6__h8__' in page and "video (success)" in page
    assert "<td>12.5%</td>" in page and "[2.2, 47.1]" in page  # Wilson 95% of 1/8
    # step 4 is the honest best at H=8: 3 of the 4 odd init states
    assert "step 4: 3/4 = 75.0% on odd init states (last checkpoint on the same odd init states: 2/4)" in page
    # paired H=8 vs H=64 at step 6: 3 pairs only H=8 solved, 0 only H=64; exact McNemar p = 2 x 0.5^3 = 0.25
    assert (
        "H=8 vs H=64: no significant difference: 50.0% vs 12.5%, difference +37.5 points" in page
        and "(3 solved only by H=8, 0 only by H=64); exact McNemar p = 0.25" in page
    )
    assert "current vs improved: no significant difference: 50.0% vs 50.0%, difference +0.0 points" in page
    assert "best horizon of each (chosen on even init states)" in page
    # the audit with deviations highlighted, the plan's cost, state-range warnings, tables, videos, figures
    assert 'class="dev"' in page and 'class="cmp"' in page and "original finetune.sh" in page
    assert "Evaluation plan and its cost" in page and "model work at most 50.0%" in page
    assert "28 of 32" in page and "right_gripper_open (28)" in page
    assert page.count("<video") == 4 and "data:video/mp4;base64," in page
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert TASKS[0] in page and "episodes (click a column to sort)" in page
    # the verdict first, then "did training work?" (success vs step and the training curves), then the comparisons;
    # the long tables fold under a one-line summary
    order = [page.index(t) for t in ("Success per run and execution horizon", "Did training work?", "Training loss")]
    assert order == sorted(order) and page.index("Did training work?") < page.index("Paired comparisons")
    assert "setting(s) deviate from the recipe</span>" in page and "<summary>2 tasks</summary>" in page
    assert page.count("<td>" + TASKS[1] + "</td>") >= 1 + 2 * 2 * 4  # per task + per-episode rows


def test_every_figure_names_a_drawing_function_and_a_workflow_caption():
    """Adding a figure is one entry in rdt/report/names.py: its drawing function exists, the workflow's report rule
    declares it (workflow/rules/report.smk loops over FIGURES) with a caption file that exists."""
    root = Path(__file__).resolve().parents[1]
    assert len({f.file for f in FIGURES}) == len(FIGURES) == len({f.key for f in FIGURES})
    for figure in FIGURES:
        assert figure.file.endswith(".png") and callable(getattr(figures, figure.draw, None)), figure
        assert (root / "workflow" / "report" / figure.rst).is_file(), figure


def test_training_figure_names_the_episodes_its_sample_error_is_measured_on(results):
    from rdt.report.collect import read_run
    from rdt.report.figures import sample_mse_title

    runs = [read_run(r) for r in results]  # heldout_episodes not set: the trainer samples the training episodes
    assert sample_mse_title(runs) == "sample MSE, action slots (training episodes)"
    for run, held in zip(runs, (2, 0)):
        run.settings["train"]["heldout_episodes"] = held
    assert "held-out episodes where heldout_episodes > 0" in sample_mse_title(runs)
    runs[1].settings["train"]["heldout_episodes"] = 1
    assert sample_mse_title(runs) == "sample MSE, action slots (held-out episodes)"
    runs[1].settings["demos_per_task"] = 1  # one demo per task: split_episodes holds none out
    assert "else training episodes" in sample_mse_title(runs)


def test_videos_of_one_task_come_in_horizon_order(tmp_path):
    from rdt.report.collect import pick_videos, read_run

    run = write_run(tmp_path, "run", 0, 32, outcomes={6: {8: [1, 1], 16: [1, 1], 64: [1, 1]}})
    picked = [v.parent.parent.name for _, v in pick_videos([read_run(run)], 6)]
    assert picked[:3] == ["h8", "h16", "h64"]


def test_steps_to_success_are_of_the_successful_episodes_only():
    from rdt.report.page import steps_to_success

    records = [{"success": True, "steps": 120}, {"success": False, "steps": 300}, {"success": True, "steps": 90}]
    assert steps_to_success(records) == {"median": 105, "min": 90, "max": 120}
    assert steps_to_success([{"success": False, "steps": 300}]) is None


def test_provenance_paths_are_relative_to_the_working_directory(tmp_path):
    from rdt.report.tables import relative_paths

    doc = {"a": str(tmp_path / "results" / "x"), "b": ["/elsewhere/hf/model", str(tmp_path)], "c": 3, "d": "rel/p"}
    assert relative_paths(doc, tmp_path) == {"a": "results/x", "b": ["/elsewhere/hf/model", "."], "c": 3, "d": "rel/p"}


def test_natural_sort_and_full_task_names():
    from rdt.report.collect import natural_key

    names = ["KITCHEN_SCENE10_put_x", "KITCHEN_SCENE1_open_y", "KITCHEN_SCENE2_turn_z"]
    assert sorted(names, key=natural_key) == ["KITCHEN_SCENE1_open_y", "KITCHEN_SCENE2_turn_z", "KITCHEN_SCENE10_put_x"]


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


def test_checkpoint_made_elsewhere_is_audited_from_its_evaluation(tmp_path):
    from rdt.report.collect import read_run
    from rdt.report.tables import audit_rows

    run = write_run(tmp_path, "released", 0, 4, {6: {8: (1, 1), 64: (0, 1)}})
    for summary in run.glob("eval/step-6/h*/summary.json"):
        s = json.loads(summary.read_text())
        s["info"] = {"text_encoder": "google/t5-v1_1-xxl", "vision_encoder": "google/siglip-so400m-patch14-384"}
        summary.write_text(json.dumps(s))
    (run / "settings.json").write_text(
        json.dumps({"format": "rdt-settings/1", "kind": "checkpoint", "exec_horizons": [8, 64]})
    )
    rows = {r["setting"]: r for r in audit_rows([read_run(run)])}
    assert rows["text encoder"]["flag"] == "ok" and rows["vision encoder"]["flag"] == "ok"
    assert rows["exec horizon h64"]["flag"] == "comparison"


def write_replay(root, name, wins, demos=None):
    """A replay run folder: step 0, horizon 0, ``wins`` successes of 4 episodes per task (init states 0..)."""
    out = root / name / "eval" / "step-0" / "h0"
    out.mkdir(parents=True)
    records = [
        {"task": t, "suite": "libero_object", "init_state": i, "horizon": 0, "step": 0, "success": i < wins[k],
         "steps": 10, "seconds": 0.1, "error": None}
        for k, t in enumerate(TASKS)
        for i in range(4)
    ]  # fmt: skip
    (out / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "step": 0,
        "horizon": 0,
        "overall": success_counts(records),
        "tasks": {t: success_counts([r for r in records if r["task"] == t]) for t in TASKS},
        "settings": {"episodes": 4},
    }
    (out / "summary.json").write_text(json.dumps(summary))
    doc = {"format": "rdt-settings/1", "kind": "replay", "exec_horizons": [0], "demos": demos, "demos_per_task": None}
    (root / name / "settings.json").write_text(json.dumps(doc))
    return root / name


def test_runs_are_compared_with_open_loop_replay_of_their_demos(tmp_path, results):
    from rdt.report.collect import read_run
    from rdt.report.compare import beats, comparisons

    # replay solves 4 + 4 of 8: every run's H=8 (4/8) and H=64 (1/8) is below it; no verdict says "better"
    replay = write_replay(tmp_path, "replay", (4, 4))
    out = tmp_path / "report"
    assert cli(["report", "--results", *map(str, results), str(replay), "--out", str(out)]) == 0
    page = (out / SUMMARY).read_text()
    assert "Not better than replaying the demos open-loop" in page
    assert "current H=8 (50.0% vs 100.0% on 8 pairs)" in page and "improved H=64" in page
    assert "<td>replay</td><td>open loop (replay)</td><td>100.0%</td>" in page
    runs = [read_run(r) for r in [*results, replay]]
    rows = comparisons(runs)["replay"]
    assert len(rows) == 4 and not any(beats(c) for c in rows)  # 2 runs x 2 horizons, none beats the floor
    assert all(c.b == "replay (open-loop replay)" for c in rows)
    # a floor that fails everywhere is beaten only where the difference is significant (8 pairs: 4 vs 0 is not)
    weak = write_replay(tmp_path / "weak", "replay", (0, 0))
    rows = comparisons([read_run(r) for r in [*results, weak]])["replay"]
    assert [round(c.stats.diff, 3) for c in rows[:2]] == [0.5, 0.125] and not any(beats(c) for c in rows)


def test_a_cut_last_row_of_metrics_or_episodes_is_left_out_with_a_warning_and_counts_agree(tmp_path, results, caplog):
    """Issue 20: a metrics.csv row cut mid-number was read as data; a cut episodes.jsonl line was warned about but
    results.csv counted it (from summary.json) while the per-episode tables did not."""
    from rdt.report.collect import read_run
    from rdt.report.tables import result_rows
    from rdt.training.run_folder import read_metrics

    metrics = results[0] / "train" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "7,0.1")  # cut: no newline, columns missing
    with caplog.at_level("WARNING"):
        rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and "incomplete" in caplog.text
    episodes = results[0] / "eval" / "step-6" / "h8" / "episodes.jsonl"
    lines = episodes.read_text().splitlines()
    episodes.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # the last record cut by a kill
    run = read_run(results[0])
    r = run.result(6, 8)
    assert r.overall["episodes"] == len(r.records) == 7  # summary.json says 8
    row = next(x for x in result_rows([run]) if x["step"] == 6 and x["horizon"] == 8 and x["task"] == "overall")
    assert row["episodes"] == 7


def test_all_zero_results_are_called_out_and_name_no_best_horizon(tmp_path):
    """Issue 23: with every rate 0 the page printed "no significant difference" lines and named a best horizon by tie
    order. Now one line says nothing succeeded, the empty comparisons are counted instead of listed, and there is no
    best horizon."""
    from rdt.report.collect import read_run
    from rdt.report.compare import comparisons

    zero = {2: {8: (0, 0), 64: (0, 0)}, 4: {8: (0, 0), 64: (0, 0)}, 6: {8: (0, 0), 64: (0, 0)}}
    runs = [write_run(tmp_path, "a", 8, 32, zero), write_run(tmp_path, "b", 8, 256, zero)]
    out = tmp_path / "report"
    assert cli(["report", "--results", *map(str, runs), "--out", str(out)]) == 0
    page = (out / SUMMARY).read_text()
    assert "No episode succeeded</b> in any evaluation (12 evaluation(s), 96 episodes)" in page
    assert "no significant difference" not in page and "comparison(s) where neither side solved" in page
    assert comparisons([read_run(r) for r in runs])["best"] == []


def test_a_run_on_noisy_demos_is_compared_with_the_replay_of_the_clean_ones(tmp_path, results):
    """DART demos (demos.action_noise) are replayed clean: the floor of a run on noisy demos is the replay run
    with the same demo settings but the noise, and the same demos per task; a one-demo run gets its own."""
    from rdt.report.collect import read_run, replay_baselines

    demos = {"source": "expert", "suite": "libero_object", "tasks": TASKS, "episodes_per_task": 4, "seed": 0}
    clean = read_run(write_replay(tmp_path, "replay", [3, 3], demos=demos))
    one = write_replay(tmp_path, "replay_one", [1, 1], demos=demos)
    doc = json.loads((one / "settings.json").read_text())
    (one / "settings.json").write_text(json.dumps({**doc, "demos_per_task": 1}))
    one = read_run(one)
    run = read_run(results[0])
    run.settings.update(demos={**demos, "action_noise": 0.1}, demos_per_task=None)
    assert [r.name for r in replay_baselines(run, [run, clean, one])] == ["replay"]
    run.settings["demos_per_task"] = 1
    assert [r.name for r in replay_baselines(run, [run, clean, one])] == ["replay_one"]
