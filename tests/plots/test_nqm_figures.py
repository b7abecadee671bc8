"""`write_nqm_figures` on a tiny spectrum: every figure as PNG + CSV, data equal to the library's curves."""

import json

import numpy as np
import pandas as pd
import pytest

from batchlab.nqm import power_law
from batchlab.nqm.scaling import scaling_curve
from batchlab.plots.nqm_figures import FigureSpec, write_nqm_figures

STEMS = ["fig2_momentum_single_direction", "fig3a_momentum_preconditioning", "fig4_ema"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    spec = FigureSpec(dim=200, batch_sizes=(4.0, 256.0), targets=(0.1, 0.01), pieces=3)
    paths = write_nqm_figures(out, spec, workers=2)
    return out, spec, paths


def test_every_figure_has_a_png_and_its_data(figures):
    out, _, paths = figures
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) >= 7
    for png in pngs:
        assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".csv").exists()
    for stem in STEMS:
        assert (out / f"{stem}.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["critical_batch_size"]) >= {"sgd@p=0", "momentum@p=0.5", "ema@p=0.75"}


def test_figure_data_equals_the_scaling_curves(figures):
    out, spec, _ = figures
    frame = pd.read_csv(out / "fig3a_momentum_preconditioning.csv")
    for kind, p in [("sgd", 0.0), ("momentum", 0.5)]:
        d = frame[(frame.optimizer == kind) & (frame.precond == p)].sort_values("batch_size")
        curve = scaling_curve(power_law(200), kind, spec.batch_sizes, target=spec.target, precond=p)
        np.testing.assert_array_equal(d.steps.to_numpy(), curve.steps)
        np.testing.assert_allclose(d.learning_rate.to_numpy(), [r.learning_rate for r in curve.rows], rtol=1e-12)
