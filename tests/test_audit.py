"""The configuration audit reproduces the seed document's flags (RDT-1B recipe vs its "current" and "improved"
training settings), audits the model, initial weights and encoders, treats H=64 next to a recipe horizon as a
comparison, and names where each recipe value comes from."""

from rdt.audit import COMPARISON, DEVIATES, FINETUNE, OK, SEED, audit, checkpoint_audit, deviations

# the seed's "current" run: 4 per GPU x 1 accumulation x 8 GPUs = 32, warmup 100, evaluated open-loop with H = 64,
# checkpoints every 10000 steps, 20 kept
CURRENT = {
    "model": "rdt-1b",
    "per_device_batch_size": 4,
    "effective_batch_size": 32,
    "lr_warmup_steps": 100,
    "checkpointing_period": 10000,
    "checkpoints_total_limit": 20,
    "mixed_precision": "bf16",
    "learning_rate": 1e-4,
}
IMPROVED = {
    **CURRENT,
    "effective_batch_size": 256,
    "lr_warmup_steps": 5000,
    "checkpointing_period": 2000,
    "checkpoints_total_limit": 30,
}
TINY = {**IMPROVED, "model": "tiny", "init_from": None, "text_encoder": "tiny", "vision_encoder": "tiny"}


def by_setting(rows):
    return {r.setting: r for r in rows}


def test_current_settings_are_flagged_like_the_seed_document():
    rows = audit(CURRENT, gpus=8, exec_horizons=[64])
    assert deviations(rows) == [
        "effective batch",
        "gradient accumulation",
        "warmup steps",
        "exec horizon h64",
        "checkpoint period",
        "checkpoints kept",
    ]
    r = by_setting(rows)
    assert r["effective batch"].value == "32"
    assert "4 x 1 x 8 = 32" in r["effective batch"].formula
    assert r["effective batch"].flag == DEVIATES
    assert r["exec horizon h64"].flag == DEVIATES  # no recipe horizon evaluated: a real deviation
    assert r["gradient accumulation"].value == "1"
    assert r["warmup steps"].value == "100"
    assert r["checkpoint period"].value == "10000"
    for ok in (
        "learning rate",
        "mixed precision",
        "action chunk",
        "image history",
        "inference steps",
        "beta schedule",
        "per-device batch",
        "model preset",
        "initial weights",
        "text encoder",
        "vision encoder",
        "vision input size",
        "image augmentation",
        "state noise",
        "condition masking",
    ):
        assert r[ok].ok, ok
    assert r["beta schedule"].value == "squaredcos_cap_v2"
    assert r["inference steps"].value == "5"
    assert r["action chunk"].value == "64" and r["image history"].value == "2"


def test_improved_settings_match_the_recipe_and_h64_next_to_8_is_a_comparison():
    rows = audit(IMPROVED, gpus=8, exec_horizons=[8, 16, 64], max_steps=150000)
    assert deviations(rows) == []
    r = by_setting(rows)
    assert "4 x 8 x 8 = 256" in r["effective batch"].formula
    assert r["exec horizon h64"].flag == COMPARISON and "comparison" in r["exec horizon h64"].formula
    assert r["exec horizon h8"].flag == OK and r["training steps"].flag == OK
    # the row's threshold is the one its note cites (RDT README: at least 150K): 100k is a deviation, not "ok"
    short = by_setting(audit(IMPROVED, gpus=8, exec_horizons=[8], max_steps=100000))["training steps"]
    assert short.flag == DEVIATES and "150K" in short.formula and short.recipe == ">= 150000"


def test_model_weights_and_encoders_are_audited():
    r = by_setting(audit(TINY, gpus=0, exec_horizons=[8], max_steps=40, data={"image_size": 64}))
    assert r["model preset"].flag == DEVIATES and r["model preset"].value == "tiny"
    assert r["initial weights"].flag == DEVIATES and r["initial weights"].value.startswith("random")
    assert r["text encoder"].flag == DEVIATES and r["vision encoder"].flag == DEVIATES
    assert r["vision input size"].value == "64 px" and r["vision input size"].flag == DEVIATES
    assert r["training steps"].flag == DEVIATES
    assert r["camera image size"].value == "64 px"
    # a released checkpoint given as a local folder, encoders as local folders of the same names
    local = by_setting(
        audit(
            {
                **IMPROVED,
                "init_from": "/models/rdt-1b",
                "text_encoder": "/hf/t5-v1_1-xxl",
                "vision_encoder": "/hf/siglip-so400m-patch14-384",
            },
            gpus=8,
            exec_horizons=[8],
        )
    )
    assert all(local[k].ok for k in ("initial weights", "text encoder", "vision encoder", "vision input size"))


def test_every_row_names_its_source_and_the_original_script_where_it_differs():
    r = by_setting(audit(IMPROVED, gpus=8, exec_horizons=[16]))
    assert all(row.source for row in r.values())
    assert r["warmup steps"].source == SEED and "constant scheduler ignores" in r["warmup steps"].original
    assert r["checkpoint period"].original == "1000"
    assert r["state noise"].source == FINETUNE and r["image augmentation"].source == FINETUNE
    assert set(r["effective batch"].as_dict()) == {
        "setting",
        "recipe",
        "source",
        "original",
        "value",
        "formula",
        "flag",
    }


def test_cpu_run_and_indivisible_batch_are_flagged_with_the_reason():
    rows = by_setting(
        audit({**IMPROVED, "effective_batch_size": 250, "mixed_precision": "auto"}, gpus=0, exec_horizons=[8])
    )
    assert not rows["effective batch"].ok
    assert "250 is not divisible by 4 x 1 = 4" in rows["effective batch"].formula  # one CPU process
    assert rows["gradient accumulation"].value == "not an integer"
    assert rows["mixed precision"].value == "no" and not rows["mixed precision"].ok  # auto on CPU = fp32
    assert rows["exec horizon h8"].ok


def test_checkpoint_made_elsewhere_audits_encoders_and_horizons():
    rows = by_setting(checkpoint_audit({"text_encoder": "google/t5-v1_1-xxl", "vision_encoder": "tiny"}, [8, 64]))
    assert rows["text encoder"].ok and rows["vision encoder"].flag == DEVIATES
    assert rows["exec horizon h64"].flag == COMPARISON
