"""The workflow schema repeats facts that live in code (so that Snakemake-side validation names the key): the train
keys' types, choices and bounds (rdt/train_config.py), the suite names (rdt/libero/tasks.py) and the action chunk
that bounds the execution horizons (rdt/model/config.py). These tests keep the copies in agreement."""

from __future__ import annotations

import copy
import types
import typing

import jsonschema
import pytest

from rdt import train_config
from rdt.errors import UserError
from rdt.libero.suites import MAX_STEPS, suite_names
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
