"""Regenerate every table README and docs quote from the committed results bundles (docs/results/<name>/).

    python scripts/results_tables.py            rewrite the <!-- results:NAME[:PART] --> blocks and the figures
    python scripts/results_tables.py --check    exit 1 when a committed block differs from what the bundles give

A block is ``<!-- results:NAME[:PART] -->`` ... ``<!-- /results -->`` with PART table (default), comparisons, cost or
seeds; the figure of a bundle is docs/results/NAME.png. tests/test_bundles.py runs the check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdt.bundle import BUNDLE_FILE, plot_bundle, render  # noqa: E402

BUNDLES = ROOT / "docs" / "results"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a stale block")
    args = p.parse_args()
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        new = render(text, BUNDLES)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new)
    if args.check:
        for name in stale:
            print(f"{name}: a results block differs from its bundle; run python scripts/results_tables.py")
        return 1 if stale else 0
    for bundle in sorted(BUNDLES.glob(f"*/{BUNDLE_FILE}")):
        plot_bundle(bundle.parent, BUNDLES / f"{bundle.parent.name}.png")
    for name in stale:
        print(f"updated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
