"""The configuration audit reproduces the seed document's flags (RDT-1B recipe vs its "current" and "improved"
training settings)."""
from rdt.audit import DEVIATES, audit, deviations

# the seed's "current" run: 4 per GPU x 1 accumulation x 8 GPUs = 32, warmup 100, evaluated open-loop with H = 64,
# checkpoints every 10000 steps, 20 kept
CURRENT = {"model": "rdt-1b", "per_device_batch_size": 4, "effective_batch_size": 32, "lr_warmup_steps": 100,
           "checkpointing_period": 10000, "checkpoints_total_limit": 20, "mixed_precision": "bf16",
           "learning_rate": 1e-4}
IMPROVED = {**CURRENT, "effective_batch_size": 256, "lr_warmup_steps": 5000, "checkpointing_period": 2000,
            "checkpoints_total_limit": 30}


def by_setting(rows):
    return {r.setting: r for r in rows}


def test_current_settings_are_flagged_like_the_seed_document():
    rows = audit(CURRENT, gpus=8, exec_horizons=[64])
    assert deviations(rows) == ["effective batch", "gradient accumulation", "warmup steps", "exec horizon h64",
                                "checkpoint period", "checkpoints kept"]
    r = by_setting(rows)
    assert r["effective batch"].value == "32"
    assert "4 x 1 x 8 = 32" in r["effective batch"].formula
    assert r["effective batch"].flag == DEVIATES
    assert r["gradient accumulation"].value == "1"
    assert r["warmup steps"].value == "100"
    assert r["checkpoint period"].value == "10000"
    for ok in ("learning rate", "mixed precision", "action chunk", "image history", "inference steps",
               "beta schedule", "per-device batch"):
        assert r[ok].ok, ok
    assert r["beta schedule"].value == "squaredcos_cap_v2"
    assert r["inference steps"].value == "5"
    assert r["action chunk"].value == "64" and r["image history"].value == "2"


def test_improved_settings_match_the_recipe():
    rows = audit(IMPROVED, gpus=8, exec_horizons=[8, 16])
    assert deviations(rows) == []
    assert "4 x 8 x 8 = 256" in by_setting(rows)["effective batch"].formula


def test_cpu_run_and_indivisible_batch_are_flagged_with_the_reason():
    rows = by_setting(audit({**IMPROVED, "effective_batch_size": 250, "mixed_precision": "auto"}, gpus=0,
                            exec_horizons=[8]))
    assert not rows["effective batch"].ok
    assert "250 is not divisible by 4 x 1 = 4" in rows["effective batch"].formula   # one CPU process
    assert rows["gradient accumulation"].value == "not an integer"
    assert rows["mixed precision"].value == "no" and not rows["mixed precision"].ok   # auto on CPU = fp32
    assert rows["exec horizon h8"].ok
