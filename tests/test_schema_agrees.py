"""The workflow schema repeats facts that live in code (so that Snakemake-side validation names the key): the train
keys' types, choices and bounds (rdt/train_config.py), the eval keys' that one evaluation's settings document has
(rdt/evaluation/config.py), the suite names (rdt/libero/tasks.py) and the action chunk that bounds the execution
horizons (rdt/model/config.py). These tests keep the copies in agreement."""

from __future__ import annotations

import copy
import types
import typing

import jsonschema
import pytest

from rdt import train_config
from rdt.errors import UserError
from rdt.evaluation import config as eval_config
from rdt.libero.suites import INIT_STATES_PER_TASK, MAX_STEPS, suite_names
from rdt.model.config import PRED_HORIZON
from rdt.plan import load_schema

PATHS = {"data": "data.h5", "lang": "lang.safetensors", "stats": "dataset_stat.json"}
#: settings another key decides about (cross-key rules of from_dict), so that each probe tests its own key only
CONTEXT = {"cache_image_features": {"image_aug": False}, "ema_min": {"ema_max": 1.0}, "ema_max": {"ema_min": 0.0}}
#: keys whose values are free-form strings in the code; the schema may say more (a pinned fingerprint's form)
FREE_FORM = ("code_fingerprint",)
JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _train_properties() -> dict:
    return load_schema()["properties"]["train"]["properties"]


def _run_keys() -> list[str]:
    return [k for k in train_config.TrainConfig.__dataclass_fields__ if k not in ("data", "lang", "stats", "run")]


def _code_accepts(key: str, value) -> bool:
    try:
        train_config.from_dict({**PATHS, **CONTEXT.get(key, {}), key: value})
    except UserError:
        return False
    return True


def _schema_accepts(prop: dict, value) -> bool:
    return jsonschema.Draft202012Validator(prop).is_valid(value)


def _probes(hint) -> list:
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    values: list = ["text", None, True]
    if int in kinds:
        values += [-1, 0, 1, 2, 1000]
    if float in kinds:
        values += [-1.0, -0.5, 0, 0.0, 0.5, 1, 1.0, 1.5, 2.0]
    return values


def test_schema_lists_every_train_key_with_the_codes_type():
    props = _train_properties()
    assert set(props) == set(_run_keys()) | {"gpus", "max_steps"}
    hints = typing.get_type_hints(train_config.TrainConfig)
    for key in _run_keys():
        hint = hints[key]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        schema_types = props[key]["type"] if isinstance(props[key]["type"], list) else [props[key]["type"]]
        assert sorted(schema_types) == sorted(JSON_TYPE[k] for k in kinds), key


def test_schema_choices_are_the_codes():
    props = _train_properties()
    assert set(train_config.CHOICES) == {k for k in _run_keys() if "enum" in props[k]}
    for key, choices in train_config.CHOICES.items():
        assert props[key]["enum"] == list(choices), key


@pytest.mark.parametrize("key", [k for k in _run_keys() if k not in train_config.CHOICES and k not in FREE_FORM])
def test_schema_and_code_accept_the_same_values(key):
    prop = copy.deepcopy(_train_properties()[key])
    hint = typing.get_type_hints(train_config.TrainConfig)[key]
    disagree = [v for v in _probes(hint) if _schema_accepts(prop, v) != _code_accepts(key, v)]
    assert not disagree, (
        f"train.{key}: workflow/schemas/config.schema.yaml and rdt/train_config.py disagree about "
        f"{disagree} (schema {prop})"
    )


def test_suite_names_and_the_horizon_bound_agree():
    schema = load_schema()
    assert schema["properties"]["demos"]["properties"]["suite"]["enum"] == suite_names()
    assert schema["properties"]["eval"]["properties"]["suite"]["enum"] == suite_names() + [None]
    assert list(MAX_STEPS) == suite_names()
    assert schema["definitions"]["horizon"]["maximum"] == PRED_HORIZON


# ------------------------------------------------------------------------------------------------ the eval section
# The workflow's eval keys that one evaluation job's settings document (rdt/evaluation/config.py, EvalConfig) also
# has agree with its validation: types, choices and bounds.
#: what the workflow checks beyond the schema (rdt/plan/checks.check_eval_numbers), added to the schema's property
PLAN_CHECKS = {"episodes_per_task": {"maximum": INIT_STATES_PER_TASK}}
#: keys where the document's null means what the workflow writes as a value: weights null = auto (EMA when the
#: checkpoint has them; the workflow's evaluate_checkpoints entries say auto, a run's eval.weights ema or model)
NULL_IS_DEFAULT = ("weights",)
#: an empty task list in the workflow means demos.tasks (rdt/plan/core.py: eval.tasks or demos.tasks); the plan
#: never writes one into the document, which refuses it
EMPTY_IS_DEFAULT = ("tasks",)
EVAL_REQUIRED = {"checkpoint": "ck", "exec_horizons": [8]}


def _eval_properties() -> dict:
    return load_schema()["properties"]["eval"]["properties"]


def _shared_eval_keys() -> list[str]:
    return sorted(set(_eval_properties()) & set(eval_config.EvalConfig.__dataclass_fields__))


def _eval_code_accepts(key: str, value) -> bool:
    try:
        eval_config.from_dict({**EVAL_REQUIRED, key: value})
    except UserError:
        return False
    return True


def _eval_probes(key: str) -> list:
    # JSON Schema's integer takes 8.0 too; YAML writes a horizon as 8, so integral floats are not probed
    if key == "exec_horizons":
        lists = [[], [8], [1], [0], [-1], [PRED_HORIZON], [PRED_HORIZON + 1], [8, 8], [8, 16], ["8"], [True], [8.5]]
        return [None, "text", 8, *lists]
    if key == "tasks":
        return [None, "text", 3, [], ["0"], [0], ["a", 1], [1.5], [True], [None]]
    bounds = [-1, 0, 1, 2, INIT_STATES_PER_TASK, INIT_STATES_PER_TASK + 1, 1000]
    return ["text", None, True, 1.5, *bounds, "ema", "model", "auto", *suite_names()]


def test_the_eval_keys_the_document_shares():
    assert _shared_eval_keys() == sorted(
        ["suite", "tasks", "exec_horizons", "episodes_per_task", "max_steps", "weights", "seed", "videos_per_task"]
    )


def test_eval_choices_are_the_codes():
    props = _eval_properties()
    assert props["suite"]["enum"] == list(eval_config.CHOICES["suite"]) + [None]
    assert props["weights"]["enum"] == list(eval_config.CHOICES["weights"])
    entry = load_schema()["properties"]["evaluate_checkpoints"]["items"]["properties"]
    assert entry["weights"]["enum"] == ["auto", *eval_config.CHOICES["weights"]]  # auto: the document's null


@pytest.mark.parametrize("key", _shared_eval_keys())
def test_eval_schema_and_code_accept_the_same_values(key):
    prop = {**copy.deepcopy(_eval_properties()[key]), **PLAN_CHECKS.get(key, {})}
    prop.pop("default", None)
    schema = load_schema()
    prop = {**prop, "definitions": schema["definitions"]}  # the horizon's bounds
    probes = _eval_probes(key)
    if key in NULL_IS_DEFAULT:
        assert not _schema_accepts(prop, None) and _eval_code_accepts(key, None)
        probes.remove(None)
    if key in EMPTY_IS_DEFAULT:
        assert _schema_accepts(prop, []) and not _eval_code_accepts(key, [])
        probes.remove([])
    disagree = [v for v in probes if _schema_accepts(prop, v) != _eval_code_accepts(key, v)]
    assert not disagree, (
        f"eval.{key}: workflow/schemas/config.schema.yaml (with the plan's checks) and rdt/evaluation/config.py "
        f"disagree about {disagree} (schema {prop})"
    )


def test_the_plans_episode_bound_is_the_codes():
    from rdt.plan.checks import check_eval_numbers

    check_eval_numbers("config", {"episodes_per_task": INIT_STATES_PER_TASK})
    with pytest.raises(UserError, match="episodes_per_task"):
        check_eval_numbers("config", {"episodes_per_task": INIT_STATES_PER_TASK + 1})
