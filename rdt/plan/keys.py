"""Content keys and stage code fingerprints: the two ingredients of every identity the plan derives.

A key is the short hash of the settings that determine an output (``rdt.utils.hashing.settings_key``, independent
of key order); a stage's code fingerprint covers its entry module (``STAGE_MODULES``) and every rdt module it
imports (``rdt.fingerprint``), so an edit of that code changes the keys that include it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from rdt import fingerprint
from rdt.utils.hashing import settings_key

#: the entry module of each stage; a stage's code fingerprint covers it and every rdt module it imports
STAGE_MODULES = {
    "expert": "rdt.libero.expert",
    "convert": "rdt.libero.convert",
    "stats": "rdt.data.stats",
    "encode": "rdt.encode",
    "train": "rdt.training.command",
    "evaluate": "rdt.evaluation.command",
    "report": "rdt.report.command",
    "replay": "rdt.replay",
}


def key_of(settings: Any) -> str:
    """Short content key of the settings that determine a shared output."""
    return settings_key(settings, length=12)


@cache
def code_fingerprint(stage: str) -> str:
    return fingerprint.fingerprint(STAGE_MODULES[stage])


def stage_code(*stages: str) -> str:
    """One fingerprint of the code of several stages (e.g. convert and stats, whose outputs share a folder)."""
    return fingerprint.fingerprint(*(STAGE_MODULES[s] for s in stages))
