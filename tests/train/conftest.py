"""Make the shared tiny test workloads (tests/toys.py) importable."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
