"""Record the NQM command-line outputs, to prove a refactor leaves the numbers unchanged.

    PYTHONPATH=src python benchmarks/compare_nqm_outputs.py record DIR [--quick]
    diff -r BEFORE_DIR AFTER_DIR

Each case is one ``batchlab`` command whose standard output (JSON or a table) is written to
``DIR/<name>.txt``; ``demo-nqm`` reproduces the NQM table the demo prints (its scaling curves on the
authors' binned spectrum) and ``figures-quick`` the data files of ``batchlab nqm figures --quick``
(CSV and JSON only: PNG bytes depend on matplotlib, not on the numbers).  Outputs must be
byte-identical before and after a behaviour-preserving change.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import shutil
import sys
import time
from pathlib import Path

SMALL = ["--batch-sizes", "4,64,1024,2^14", "--dim", "1000"]
CASES = {
    **{f"scaling-{k}": ["nqm", "scaling", "--optimizer", k, *SMALL, "--json"]
       for k in ("sgd", "momentum", "nesterov", "ema", "momentum-ema", "schedule")},
    "scaling-momentum-p05-binned": ["nqm", "scaling", "--optimizer", "momentum", "--precond", "0.5",
                                    "--batch-sizes", "2,32,512,8192", "--binned", "100", "--target", "0.003",
                                    "--json"],
    "scaling-schedule-p05-3pieces": ["nqm", "scaling", "--optimizer", "schedule", "--precond", "0.5",
                                     "--pieces", "3", *SMALL, "--json"],
    "scaling-ema-table": ["nqm", "scaling", "--optimizer", "ema", *SMALL],
    "scaling-sgd-default": ["nqm", "scaling", "--optimizer", "sgd", "--batch-sizes", "4,64,1024,16384", "--json"],
    "scaling-momentum-default": ["nqm", "scaling", "--optimizer", "momentum", "--batch-sizes", "4,64,1024,16384",
                                 "--json"],
    **{f"risk-{name}": ["nqm", "risk", "--batch-size", "32", "--steps", "0,1,10,1000,100000,2^40", *flags, "--json"]
       for name, flags in {
           "sgd": ["--lr", "0.9"],
           "sgd-precond": ["--lr", "0.3", "--precond", "0.5"],
           "momentum": ["--lr", "0.3", "--momentum", "0.9"],
           "nesterov": ["--lr", "0.3", "--momentum", "0.9", "--nesterov"],
           "ema": ["--lr", "0.9", "--ema", "0.99"],
           "momentum-ema": ["--lr", "0.3", "--momentum", "0.9", "--ema", "0.95"],
           "nesterov-ema": ["--lr", "0.3", "--momentum", "0.8", "--nesterov", "--ema", "0.9"],
           "unstable": ["--lr", "2.5", "--momentum", "0.2"],
           "binned-momentum": ["--lr", "0.5", "--momentum", "0.99", "--binned", "100"],
       }.items()},
    "risk-table": ["nqm", "risk", "--batch-size", "8", "--steps", "0,10,1000", "--lr", "0.4", "--momentum", "0.5"],
}


def _run_cli(args: list[str]) -> str:
    from batchlab.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"{args}: exit {exc.code}") from None
    return out.getvalue()


def _demo_nqm() -> str:
    """The NQM table of ``batchlab demo`` (src/batchlab/cli/demo.py), as plain text."""
    from batchlab.nqm import binned, power_law
    from batchlab.nqm.scaling import scaling_curve

    problem = binned(power_law(10_000), 100)
    sizes = [4.0, 64.0, 1024.0, 16384.0, 262144.0]
    curves = {k: scaling_curve(problem, k, sizes, target=0.01) for k in ("sgd", "momentum", "ema")}
    lines = [problem.name]
    for i, B in enumerate(sizes):
        cells = [f"{int(c.rows[i].steps):,}" if math.isfinite(c.rows[i].steps) else "—" for c in curves.values()]
        lines.append(" ".join([f"{int(B):,}", *cells, f"{problem.lower_bound_steps(B, 0.01):,.0f}"]))
    for k, c in curves.items():
        lines.append(f"{k} {c.critical.fit.b_noise!r} {c.critical.overhead!r} {[r.as_dict() for r in c.rows]!r}")
    return "\n".join(lines) + "\n"


def record(folder: Path, quick: bool, only: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cases = dict(CASES)
    if quick:
        cases = {k: v for k, v in cases.items() if "default" not in k}
    if only:
        cases = {k: v for k, v in cases.items() if any(o in k for o in only)}
    for name, args in cases.items():
        start = time.perf_counter()
        (folder / f"{name}.txt").write_text(_run_cli(args))
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    if not only or any(o in "demo-nqm" for o in only):
        start = time.perf_counter()
        (folder / "demo-nqm.txt").write_text(_demo_nqm())
        print(f"demo-nqm: {time.perf_counter() - start:.1f} s", flush=True)
    if not quick and (not only or any(o in "figures-quick" for o in only)):
        start = time.perf_counter()
        figs = folder / "figures-quick"
        shutil.rmtree(figs, ignore_errors=True)
        _run_cli(["nqm", "figures", "--out", str(figs), "--quick", "--binned", "100"])
        for png in figs.glob("*.png"):
            png.unlink()
        print(f"figures-quick: {time.perf_counter() - start:.1f} s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--quick", action="store_true", help="skip the default-sized cases and the figures")
    parser.add_argument("--only", nargs="*", default=[], help="cases whose name contains one of these")
    args = parser.parse_args(argv)
    record(args.folder, args.quick, args.only)


if __name__ == "__main__":
    sys.exit(main())
