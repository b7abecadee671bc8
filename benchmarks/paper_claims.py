"""The paper's neural-network claims (Zhang et al. 2019, section 5) judged on a finished study.

Each claim maps onto the study's pairwise verdicts (:mod:`batchlab.analysis.replicated`: 95% intervals
over seeds and search; overlap = inconclusive), read in the claim's direction:

* "momentum gives no benefit over SGD at small batch sizes": *contradicted* if momentum needs fewer
  steps than sgd at the smallest batch size (intervals apart), else *inconclusive* — overlapping
  intervals do not show that there is no benefit;
* "momentum extends perfect scaling": momentum's B_noise larger than sgd's;
* "Adam extends it further": adam's B_noise larger than momentum's;
* "K-FAC further still": kfac's B_noise larger than adam's;
* "K-FAC reduces the steps needed at small batch sizes": kfac fewer steps than momentum at the smallest B;
* "an EMA reduces the steps at small batch sizes": momentum+ema fewer steps than momentum at the smallest B;
* "... does not help at large ones": *contradicted* if momentum+ema needs fewer steps at the largest B,
  else inconclusive;
* "... and so reduces the critical batch size": momentum+ema's B_noise smaller than momentum's.

Usage::

    PYTHONPATH=src python benchmarks/paper_claims.py runs/paper-mnist1d > results/paper-mnist1d/claims.md
"""

from __future__ import annotations

import sys

from batchlab.analysis import analyze

FLIP = {"supported": "contradicted", "contradicted": "supported", "inconclusive": "inconclusive"}


def verdict(frame, a, b, batch_size=None):
    """The verdict and evidence of "a needs fewer steps than b at batch_size" (or, without batch_size,
    "a's critical batch size is larger than b's"), whichever order the study states it in."""
    for first, second, flip in ((a, b, False), (b, a, True)):
        rows = frame[(frame["a"] == first) & (frame["b"] == second)]
        rows = rows[rows["batch_size"].isna()] if batch_size is None else rows[rows["batch_size"] == batch_size]
        if not rows.empty:
            row = rows.iloc[0]
            return (FLIP[row["verdict"]] if flip else row["verdict"]), row["evidence"]
    return "inconclusive", "not in the study"


def main() -> None:
    result = analyze(sys.argv[1])
    frame = result.verdicts
    sizes = sorted(result.best["batch_size"].unique())
    small, large = float(sizes[0]), float(sizes[-1])
    rows = []
    v, e = verdict(frame, "momentum", "sgd", small)
    rows.append(("momentum gives no benefit over SGD at small batch sizes",
                 "contradicted" if v == "supported" else "inconclusive", f"B = {small:g}: {e}"))
    for claim, a, b in (("momentum extends perfect scaling beyond SGD", "momentum", "sgd"),
                        ("Adam extends it further than momentum", "adam", "momentum"),
                        ("K-FAC extends it further than Adam", "kfac", "adam")):
        rows.append((claim, *verdict(frame, a, b)))
    v, e = verdict(frame, "kfac", "momentum", small)
    rows.append(("K-FAC reduces the steps needed at small batch sizes (vs momentum)", v, f"B = {small:g}: {e}"))
    v, e = verdict(frame, "momentum+ema", "momentum", small)
    rows.append(("an EMA of the weights reduces the steps at small batch sizes", v, f"B = {small:g}: {e}"))
    v, e = verdict(frame, "momentum+ema", "momentum", large)
    rows.append(("an EMA does not help at large batch sizes", "contradicted" if v == "supported" else "inconclusive",
                 f"B = {large:g}: {e}"))
    v, e = verdict(frame, "momentum", "momentum+ema")
    rows.append(("an EMA reduces the critical batch size", v, e))
    print("| claim (Zhang et al. 2019) | verdict | evidence (95% intervals) |")
    print("| --- | --- | --- |")
    for claim, v, e in rows:
        print(f"| {claim} | {v} | {e} |")


if __name__ == "__main__":
    main()
