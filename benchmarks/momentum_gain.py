"""How much momentum buys over SGD per batch size: measured against the calibrated NQM.

Reads validation tables (``cells.csv`` of ``benchmarks/calibration_validation.py``) and prints, per batch
size, SGD's steps over momentum's (and over Adam's where present): the medians over the rows of every
study design seed, measured and predicted.  A predicted ratio above the measured one means the NQM's
heavy ball gains more from its tuned momentum than the network does.

Usage::

    PYTHONPATH=src python benchmarks/momentum_gain.py results/calibration/search-box/digits-6seeds/cells.csv \\
        results/calibration/search-box/fashion-mnist/cells.csv
"""

from __future__ import annotations

import argparse

import pandas as pd


def gains(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows: measured / NQM SGD-over-X steps ratios; columns: batch sizes."""
    medians = cells.groupby(["optimizer", "batch_size"])[["measured_steps", "predicted_steps"]].median()
    rows = {}
    for other in ("momentum", "adam"):
        if other not in medians.index.get_level_values(0) or "sgd" not in medians.index.get_level_values(0):
            continue
        for column, label in (("measured_steps", "measured"), ("predicted_steps", "NQM")):
            rows[f"{label} sgd / {other}"] = medians.loc["sgd", column] / medians.loc[other, column]
    return pd.DataFrame(rows).T.round(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", nargs="+", help="cells.csv files")
    args = parser.parse_args()
    for path in args.cells:
        print(f"{path}: SGD's steps over the other optimizer's, per batch size (medians over design seeds)")
        print(gains(pd.read_csv(path)).to_string())
        print()


if __name__ == "__main__":
    main()
