"""The shipped study presets (``studies/*.toml``): each loads, is named after its file, and its row in
``studies/README.md`` states the trial budget the spec actually allows."""

from __future__ import annotations

import pathlib
import re

import pytest

from batchlab.optim.registry import optimizer_names
from batchlab.study import load_spec
from batchlab.userref import is_reference
from batchlab.workloads.registry import list_workloads

STUDIES = pathlib.Path(__file__).resolve().parents[2] / "studies"
PRESETS = sorted(STUDIES.glob("*.toml"))


def readme_budgets() -> dict[str, int]:
    """Preset name -> the trials column of the README's preset table ("≤ 1,008" -> 1008)."""
    rows = {}
    for line in (STUDIES / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([\w-]+)` \|.*\| (?:≤ )?([\d,]+) \|$", line)
        if match:
            rows[match.group(1)] = int(match.group(2).replace(",", ""))
    return rows


def test_presets_are_shipped():
    assert len(PRESETS) >= 10
    assert "quick" in {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_is_documented(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.workload in list_workloads()
    # a registry optimizer, or an import reference to a file next to the presets
    assert all(entry.name in optimizer_names() or is_reference(entry.name) for entry in spec.optimizers)
    per_cell = spec.tuning.trials_per_cell() if spec.tuning else spec.trials
    # counted by hand from the spec's tables, not by the code under test
    budget = len(spec.batch_sizes) * len(spec.optimizers) * per_cell
    assert readme_budgets().get(path.stem) == budget, f"studies/README.md's row for {path.stem}"
