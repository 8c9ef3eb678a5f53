"""The workflow with dotted overrides: every ``--SECTION.KEY=VALUE`` becomes a Snakemake ``--config
'SECTION={KEY: VALUE}'`` (nested keys with more dots; values in YAML, e.g. ``--eval.exec_horizons=[8,16]``); every
other argument goes to ``snakemake`` unchanged, and ``--cores 2`` is added when neither ``--cores`` nor ``--profile``
is given. The command is printed before it runs. The same settings as a config file: config/README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from rdt.errors import UserError

#: rdt.cli hands every argument it does not know to this command (they are snakemake's)
PASSTHROUGH = True


def split_overrides(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(the nested overrides of the ``--a.b=value`` arguments, every other argument in order)."""
    overrides: dict[str, Any] = {}
    rest = []
    for arg in args:
        key, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not eq or "." not in key:
            rest.append(arg)
            continue
        *parents, last = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{arg}: {part} is set to a value by an earlier override and cannot hold keys")
        try:
            node[last] = yaml.safe_load(value) if value else None
        except yaml.YAMLError as e:
            raise UserError(f"{arg}: the value is not YAML ({e})") from None
    return overrides, rest


def snakemake_command(args: list[str]) -> list[str]:
    """The snakemake command line for ``rdt run``'s arguments."""
    overrides, rest = split_overrides(args)
    cmd = [str(Path(sys.executable).parent / "snakemake")]
    if not any(
        a in ("--cores", "-c", "--profile", "--jobs", "-j") or a.startswith(("--cores=", "--profile=")) for a in rest
    ):
        cmd += ["--cores", "2"]
    cmd += rest
    if overrides:
        cmd += ["--config"] + [
            f"{section}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}"
            for section, value in overrides.items()
        ]
    return cmd


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options of its own: every argument is an override or snakemake's (rdt.cli passes them on in order)."""


def main(args: argparse.Namespace) -> int:
    cmd = snakemake_command(args.args)
    print(shlex.join(cmd), flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached
