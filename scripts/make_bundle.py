"""Copy a finished workflow run's evidence into a results bundle under docs/results/ (rdt/bundle.py).

    python scripts/make_bundle.py --configfile config/study.yaml --out docs/results/study \
        --command "snakemake --cores 2 --configfile config/study.yaml" --seconds 5400

The bundle holds the plan's targets (runs, replay runs, checkpoints) of the config: settings, per-episode records,
summaries, training metrics, the evaluated exports' pipeline.json, the expert's summaries and Snakemake's job
benchmarks; no checkpoints or videos. `python scripts/results_tables.py` then regenerates every table that quotes it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdt.bundle import make_bundle  # noqa: E402
from rdt.plan import Plan  # noqa: E402
from rdt.plan.config import deep_merge  # noqa: E402
from rdt.utils.files import read_yaml  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--configfile", type=Path, nargs="+", required=True, help="config file(s), merged in order as snakemake does"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--command", required=True, help="the command that produced the results, as a user reruns it")
    p.add_argument("--seconds", type=float, help="its wall time")
    p.add_argument("--machine", default=f"{platform.machine()}, 2 CPU cores, no GPU")
    p.add_argument("--note", default="", help="anything a reader must know (e.g. the machine was shared)")
    p.add_argument("--commit", help="the commit the results were made with (default: this checkout's HEAD)")
    args = p.parse_args()
    config: dict = {}
    for path in args.configfile:
        config = deep_merge(config, read_yaml(path))
    plan = Plan(config, check_files=False)
    meta = {"command": args.command, "seconds": args.seconds, "machine": args.machine, "note": args.note}
    meta["config"] = " ".join(map(str, args.configfile))
    if args.commit:
        meta["commit"] = args.commit
    with tempfile.TemporaryDirectory() as tmp:  # the merged config is the bundle's config.yaml
        merged = Path(tmp) / "config.yaml"
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        out = make_bundle(Path(plan.results), plan.targets, args.out, meta, config=merged)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(plan.targets)} target(s), {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
