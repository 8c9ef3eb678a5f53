"""`python -m rdt COMMAND --help` starts with one sentence for the user and a complete example (issue 15). The
examples form one walk-through in a scratch folder work/ (docs/cli.md, "Command line"): every path an example reads is a
file of the repository or something an earlier example wrote; each example parses with its command's options; the
docs/cli.md shows the same lines."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rdt import cli

REPO = Path(__file__).resolve().parents[1]
ORDER = [
    "expert",
    "convert",
    "stats",
    "encode",
    "train",
    "evaluate",
    "replay",
    "report",
    "verify-checkpoint",
    "fingerprint",
    "plan",
    "run",
]


def printed_help(name: str, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def sentence_and_example(text: str) -> tuple[str, str]:
    """The paragraph after the usage block and the line under ``example:``, as printed."""
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith("usage: python -m rdt ")
    sentence = paragraphs[1]
    assert paragraphs[2].startswith("example:\n  "), paragraphs[2]
    example = paragraphs[2].split("\n")[1].strip()
    return sentence, example


def test_every_command_is_in_the_walk_through():
    assert sorted(ORDER) == sorted(cli.COMMANDS) == sorted(cli.HELP)


def test_help_starts_with_a_sentence_and_an_example_that_works_as_printed(capsys):
    outputs: list[str] = []
    for name in ORDER:
        sentence, example = sentence_and_example(printed_help(name, capsys))
        # one sentence for a user: no reST markup, one full stop at the end
        assert sentence.endswith(".") and "``" not in sentence and ". " not in sentence.rstrip("."), (name, sentence)
        argv = shlex.split(example)
        assert argv[:4] == ["python", "-m", "rdt", name], example
        module = importlib.import_module(cli.COMMANDS[name][0])
        args = cli.parse_command(name, module, argv[4:])  # the options exist and fit
        values = {k: v for k, v in vars(args).items() if v is not None}
        out = values.pop("out", None)
        out = None if out is None else str(out)
        for key, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, (str, Path)) or "/" not in str(item):
                    continue
                path = Path(item)
                made_earlier = any(path == o or o in path.parents or path in o.parents for o in map(Path, outputs))
                assert made_earlier or (REPO / path).exists(), (
                    f"{name} --help: {key} {item} is neither in the repository nor written by an earlier example "
                    f"(outputs so far: {outputs})"
                )
        if out is not None:
            assert out.startswith("work/"), f"{name}: the example writes outside the scratch folder: {out}"
            outputs.append(out)
    assert outputs[:4] == ["work/demos", "work/data.h5", "work/dataset_stat.json", "work/lang.safetensors"]


def test_the_run_yaml_of_the_walk_through_reads_the_walk_through_files():
    from rdt import train_config

    cfg = train_config.load(REPO / "docs" / "examples" / "tiny_run.yaml")
    assert (cfg.data, cfg.lang, cfg.stats) == ("work/data.h5", "work/lang.safetensors", "work/dataset_stat.json")
    assert cfg.model == "tiny" and cfg.init_from is None


def test_encode_and_expert_help_no_longer_read_like_notes(capsys):
    encode = printed_help("encode", capsys)
    assert "results/data/train.h5" not in encode  # a path the pipeline stopped writing long ago
    expert = printed_help("expert", capsys)
    head = expert.split("options:")[0]
    assert "OSC_POSE" not in head and "DEMO_DROP_FIRST_STEPS" not in head  # implementation notes: after options
    assert "details:" in expert.split("options:")[1]


def test_readme_walk_through_shows_the_same_commands():
    readme = (REPO / "docs" / "cli.md").read_text()  # the command-line page README links to
    for name in ORDER:
        assert cli.HELP[name][1] in readme, f"docs/cli.md does not show the {name} example"
    assert re.search(r"^## Command line", readme, re.M)


def test_abbreviated_options_are_refused_not_guessed(capsys):
    """`rdt plan --config x=1` was taken as --configfile (argparse prefix matching) and failed with "x=1: not
    found"; now it is an unknown option."""
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", "--config", "x=1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --config" in err or "required: --configfile" in err


HEAVY = ("torch", "transformers", "diffusers", "accelerate", "mujoco", "robosuite", "matplotlib")


def test_help_of_every_command_loads_no_heavy_library():
    """`--help` answers at once: no command imports torch, the simulator or the plotting stack before it parses its
    options (rdt train --help took 2 s and rdt encode --help 1.5 s when they did; now about 0.1-0.3 s)."""
    probe = (
        "import sys\nfrom rdt import cli\n"
        "try:\n    cli.main([sys.argv[1], '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    for name in ORDER:
        done = subprocess.run([sys.executable, "-c", probe, name], capture_output=True, text=True, check=True)
        assert done.stderr.strip() == "[]", (name, done.stderr)
