"""Check that the explore trial ids and the stored spec of every study preset are unchanged.

Designs every spec (default: ``studies/*.toml``) with the working tree's code and with the code of a
git revision (default ``HEAD``; its ``src/`` is exported to a temporary folder and run in a
subprocess), and compares per spec: the explore trials' ids (in design order), ``spec.to_dict()`` (what
the store keeps) and ``spec.identity()`` (what must agree to resume a folder).  No training; a few
seconds.  Exit status 1 when anything differs.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/check_trial_ids.py [--against REV] [SPEC.toml ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def dump(paths: list[str]) -> dict:
    """Per spec: its explore ids, stored form and identity, with the importable ``batchlab``."""
    from batchlab.study import load_spec, make_design

    out = {}
    for path in paths:
        spec = load_spec(path)
        out[path] = {"ids": [t.id for t in make_design(spec)], "spec": spec.to_dict(), "identity": spec.identity()}
    return json.loads(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", help="spec files (default: studies/*.toml)")
    parser.add_argument("--against", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)  # the subprocess' mode
    args = parser.parse_args()
    specs = args.specs or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "studies").glob("*.toml"))
    if args.dump:
        json.dump(dump(specs), sys.stdout)
        return
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=str(pathlib.Path(folder) / "src"))
        old = json.loads(subprocess.run([sys.executable, __file__, "--dump", *specs], cwd=ROOT, env=env, check=True,
                                        capture_output=True, text=True).stdout)
    os.chdir(ROOT)
    new = dump(specs)
    differ = 0
    for path in specs:
        a, b = old[path], new[path]
        digest = hashlib.sha256("\n".join(b["ids"]).encode()).hexdigest()[:16]
        same = {key: a[key] == b[key] for key in ("ids", "spec", "identity")}
        differ += not all(same.values())
        print(f"{path}: {len(b['ids'])} explore ids (sha256 {digest}) "
              + ", ".join(f"{key} {'identical' if ok else 'DIFFER'}" for key, ok in same.items())
              + f" (vs {args.against})")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
