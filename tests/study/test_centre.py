"""``[tuning] centre = "calibration"``: explore boxes centred on a calibrated NQM prediction.

The centred boxes are checked against a log–log interpolation done by hand on a hand-written
prediction file; every explore trial must lie in its cell's box; specs without the option keep their
trial ids; bad input is one line and exit 2."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.errors import InputError
from batchlab.study import load_spec, parse_spec
from batchlab.study.design import make_design
from batchlab.store import open_store

from .conftest import QUICK, nqm_data, to_toml

_register()
RUNNER = CliRunner()
WIDTH = 0.25
SIZES = [16, 32, 100]  # 16 between predicted 8 and 32, 32 on a predicted point, 100 between 32 and 128
PREDICTION = {"source": "hand-written", "optimizers": {
    "sgd": {"precond": 0.0, "batch_sizes": [8, 32, 128], "steps": [300, 100, 60],
            "learning_rates": [0.2, 0.5, 1.0], "momenta": [None, None, None]},
    "momentum": {"precond": 0.0, "units": "optimizer", "batch_sizes": [128, 8, 32], "steps": [60, 300, 100],
                 "learning_rates": [0.2, 0.02, 0.08], "momenta": [0.5, 0.9, 0.8]},
    "adam": {"precond": 0.5, "batch_sizes": [8, 32, 128], "steps": [300, 100, 60],
             "learning_rates": [0.002, 0.008, 0.02], "momenta": [0.9, 0.9, 0.9]}}}
SEARCH = {"sgd": {"search": {"learning_rate": [0.05, 0.9]}},
          "momentum": {"search": {"learning_rate": [0.01, 1.0], "momentum": [0.5, 0.99]}}}


def _data(tuning=None, **overrides):
    data = nqm_data(name="centred", batch_sizes=SIZES, optimizers=SEARCH,
                    tuning={"explore": 5, "centre": "calibration", "calibration": "prediction.json",
                            "centre_width": WIDTH} if tuning is None else tuning)
    data.pop("trials")
    data.update(overrides)
    return data


def _write(folder, data=None, prediction=None, name="spec.toml"):
    (folder / "prediction.json").write_text(json.dumps(PREDICTION if prediction is None else prediction))
    path = folder / name
    path.write_text(to_toml(_data() if data is None else data))
    return path


def _loglog(points, at, *, one_minus=False):
    """By hand: the value at ``at`` on the straight line through the two bracketing points in
    (log B, log v) (or log(1 − v)); ``points`` maps batch size to value."""
    sizes = sorted(points)
    lo = max(b for b in sizes if b <= at)
    hi = min(b for b in sizes if b >= at)
    f = (lambda v: 1.0 - v) if one_minus else (lambda v: v)
    if lo == hi:
        return points[lo]
    t = math.log(at / lo) / math.log(hi / lo)
    value = f(points[lo]) * (f(points[hi]) / f(points[lo])) ** t
    return f(value)


def _expected_box(optimizer, size):
    """name -> (low, high) of the cell's centred box, by hand."""
    body = PREDICTION["optimizers"][optimizer]
    rates = dict(zip(body["batch_sizes"], body["learning_rates"]))
    rate = _loglog(rates, size)
    low, high = SEARCH[optimizer]["search"]["learning_rate"]
    box = {"learning_rate": (max(rate / 10**WIDTH, low), min(rate * 10**WIDTH, high))}
    if optimizer == "momentum":
        beta = _loglog(dict(zip(body["batch_sizes"], body["momenta"])), size, one_minus=True)
        low, high = SEARCH[optimizer]["search"]["momentum"]
        box["momentum"] = (max(1 - (1 - beta) * 10**WIDTH, low), min(1 - (1 - beta) / 10**WIDTH, high))
    return box


def test_centred_box_equals_a_log_log_interpolation_by_hand(tmp_path):
    spec = load_spec(_write(tmp_path))
    assert spec.centre is not None and spec.centre.calibration == str(tmp_path / "prediction.json")
    for entry in spec.optimizers:
        for size in SIZES:
            dims = {d.name: d for d in spec.explore_search(entry, size)}
            expected = _expected_box(entry.name, size)
            assert set(dims) == set(expected)
            for name, (low, high) in expected.items():
                assert (dims[name].low, dims[name].high) == pytest.approx((low, high), rel=1e-11), (entry.name, size)
                assert dims[name].scaling == {"learning_rate": "log", "momentum": "one_minus_log"}[name]
    sgd, momentum = spec.optimizers
    # the numbers themselves, for the record: sgd at B = 16: sqrt(0.2 · 0.5) · 10^±0.25; at B = 100 the
    # box is clipped to the search box's high end 0.9; momentum at B = 32: 1 − β = 0.2 · 10^±0.25
    assert spec.explore_search(sgd, 16)[0].low == pytest.approx(math.sqrt(0.1) / 10**0.25, rel=1e-11)
    assert spec.explore_search(sgd, 100)[0].high == 0.9
    assert spec.explore_search(momentum, 32)[1].low == pytest.approx(1 - 0.2 * 10**0.25, rel=1e-11)
    # the refinement box (unit coordinates of the whole search box) is the spec's, untouched
    assert [(d.low, d.high) for d in sgd.search] == [(0.05, 0.9)]


def test_every_explore_trial_lies_in_its_centred_box_and_ids_follow_the_prediction(tmp_path):
    spec = load_spec(_write(tmp_path))
    trials = make_design(spec)
    assert len(trials) == 2 * len(SIZES) * 5
    for trial in trials:
        for name, (low, high) in _expected_box(trial.optimizer, trial.batch_size).items():
            assert low * (1 - 1e-11) <= trial.hyperparameters[name] <= high * (1 + 1e-11), (trial, name)
    ids = [t.id for t in trials]
    assert ids == [t.id for t in make_design(load_spec(tmp_path / "spec.toml"))]  # deterministic
    # the same prediction elsewhere: the same trials and study identity; the path is provenance only
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = load_spec(_write(other))
    assert [t.id for t in make_design(moved)] == ids and moved.identity() == spec.identity()
    # another prediction: other trials, another study
    changed = json.loads(json.dumps(PREDICTION))
    changed["optimizers"]["sgd"]["learning_rates"] = [0.1, 0.25, 0.5]
    second = tmp_path / "second"
    second.mkdir()
    respec = load_spec(_write(second, prediction=changed))
    new_ids = {t.optimizer: set() for t in trials}
    for t in make_design(respec):
        new_ids[t.optimizer].add(t.id)
    assert new_ids["sgd"].isdisjoint(ids) and new_ids["momentum"] <= set(ids)
    assert respec.identity() != spec.identity()
    # and without centring: the whole search box, other trials again
    plain = parse_spec(_data(tuning={"explore": 5}))
    assert set(t.id for t in make_design(plain)).isdisjoint(ids)


def test_an_entry_for_x_serves_x_plus_ema_and_an_explicit_unit_marker_wins(tmp_path):
    prediction = json.loads(json.dumps(PREDICTION))
    prediction["optimizers"]["sgd"] |= {"precond": 0.5, "units": "optimizer"}
    data = _data(optimizers={"sgd+ema": {"search": {"learning_rate": [0.05, 0.9]}, "ema_decays": [0.9]}})
    spec = load_spec(_write(tmp_path, data, prediction))
    entry = spec.optimizers[0]
    assert spec.explore_search(entry, 16)[0].low == pytest.approx(math.sqrt(0.1) / 10**0.25, rel=1e-11)


def _digest(trials):
    return hashlib.sha256("\n".join(t.id for t in trials).encode()).hexdigest()[:16]


def test_specs_without_centre_keep_their_trial_ids_and_stored_form():
    """Pinned before the option existed (commit 4ba28ae): the quick preset's explore ids (that preset is
    now `quick-error`: only its name changed, which is not in the ids), and a plain nqm-sampled spec's
    (`benchmarks/check_trial_ids.py` checks every preset)."""
    spec = load_spec(QUICK.with_name("quick-error.toml"))
    assert spec.centre is None and "centre" not in spec.to_dict() and "calibration" not in spec.to_dict()
    assert _digest(make_design(spec)) == "6273232beab8e2a1"
    assert _digest(make_design(parse_spec(nqm_data()))) == "051ad3d7a52313a8"


def test_a_different_prediction_is_a_different_study_in_the_same_folder(tmp_path):
    spec_path = _write(tmp_path)
    spec = load_spec(spec_path)
    folder = tmp_path / "study"
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), spec_path.read_text(), make_design(spec))
    changed = json.loads(json.dumps(PREDICTION))
    changed["optimizers"]["momentum"]["momenta"] = [0.5, 0.95, 0.8]
    (tmp_path / "prediction.json").write_text(json.dumps(changed))
    result = RUNNER.invoke(app, ["study", "run", str(spec_path), "--out", str(folder)])
    assert result.exit_code == 2 and "different study (centre differs" in result.stderr, result.output


def _bad_prediction(**entry):
    prediction = json.loads(json.dumps(PREDICTION))
    prediction["optimizers"]["sgd"] |= entry
    return prediction


BAD = {
    "missing file": ({"calibration": "nowhere.json"}, None, "tuning.calibration: prediction file not found: "),
    "unreadable file": ({"calibration": "."}, None, "tuning.calibration: cannot read "),
    "malformed JSON": ({}, "{not json", "tuning.calibration: cannot read "),
    "no optimizers object": ({}, {"sgd": {}}, "expected an object with an 'optimizers' object"),
    "optimizer missing": ({}, {"optimizers": {"sgd": PREDICTION["optimizers"]["sgd"]}},
                          "has no prediction for optimizer 'momentum' (it has: sgd)"),
    "proxy units (precond)": ({}, _bad_prediction(precond=0.5),
                              "the predicted hyperparameters of 'sgd' in "),
    "proxy units (marker)": ({}, _bad_prediction(units="proxy"), "in a proxy's units (\"units\": \"proxy\")"),
    "no learning rates": ({}, _bad_prediction(learning_rates=None), "gives no learning_rates for 'sgd'"),
    "non-positive rate": ({}, _bad_prediction(learning_rates=[0.2, 0.0, 1.0]), "learning rates must be > 0"),
    "momentum of 1": ({}, _bad_prediction(momenta=[None, 1.0, None]), "momenta must be in [0, 1)"),
    "batch size outside the prediction": ({}, _bad_prediction(batch_sizes=[16, 32, 64]),
                                          "batch size 100 of sgd lies outside the batch sizes"),
    "box misses the search box": ({}, _bad_prediction(learning_rates=[20.0, 50.0, 100.0]),
                                  "misses the search box [0.05, 0.9]"),
    "zero width": ({"centre_width": 0}, None, "tuning.centre_width must be in (0, 10] decades, got 0"),
    "negative width": ({"centre_width": -0.5}, None, "tuning.centre_width must be in (0, 10] decades, got -0.5"),
    "width not a number": ({"centre_width": "wide"}, None, "tuning.centre_width"),
    "unknown centre": ({"centre": "nqm"}, None, "tuning.centre must be one of 'calibration', got 'nqm'"),
    "centre without calibration": ({"calibration": None}, None, "needs tuning.calibration"),
    "empty calibration": ({"calibration": ""}, None, "tuning.calibration must not be empty"),
    "calibration without centre": ({"centre": None}, None, 'tuning.calibration needs tuning.centre = "calibration"'),
    "width without centre": ({"centre": None, "calibration": None}, None,
                             'tuning.centre_width needs tuning.centre = "calibration"'),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_centring_is_one_line_exit_2_and_creates_nothing(case, tmp_path):
    edits, prediction, needle = BAD[case]
    tuning = {"explore": 5, "centre": "calibration", "calibration": "prediction.json", "centre_width": WIDTH}
    tuning = {k: v for k, v in (tuning | edits).items() if v is not None}
    spec = _write(tmp_path, _data(tuning=tuning), prediction if isinstance(prediction, dict) else None)
    if isinstance(prediction, str):
        (tmp_path / "prediction.json").write_text(prediction)
    out = tmp_path / "out"
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists()
    with pytest.raises(InputError):
        load_spec(spec)


# --- the report: predicted vs winning hyperparameters ----------------------------------------------


def _synthetic_study(folder, spec):
    """Record every explore trial of ``spec``: trial ``i`` reaches the target in ``100 + 10 i`` steps, so
    trial 0 wins every cell."""
    from batchlab.store import TrackOutcome, TrialOutcome

    trials = make_design(spec)
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "", trials)
        for t in trials:
            steps = 100 + 10 * t.index
            curve = ((0, {"relative_risk": 1.0}), (steps, {"relative_risk": 0.01}))
            store.record(TrialOutcome(t.id, "reached", steps, steps, None, None, {"relative_risk": 0.01}, 1.0, 0.1,
                                      "host", "local:1", (TrackOutcome("main", None, "reached", steps, {}, curve),)))
    return trials


def test_report_shows_the_predicted_hyperparameters_in_optimizer_units_only(tmp_path):
    from batchlab.analysis import analyze
    from batchlab.plots.study_figures import learning_rate_figure
    from batchlab.report import write_report

    spec = parse_spec(_data(tuning={"explore": 3}, optimizers=SEARCH | {"adam": {}}))
    folder = tmp_path / "study"
    trials = _synthetic_study(folder, spec)
    (folder / "calibration").mkdir()
    (folder / "calibration" / "prediction.json").write_text(json.dumps(PREDICTION))
    analysis = analyze(folder, resamples=10, critical_resamples=5)
    table = analysis.hyperparameters_vs_prediction
    assert sorted(set(table["optimizer"])) == ["momentum", "sgd"]  # adam's rates are a proxy's: left out
    for row in table.itertuples():
        winner = next(t for t in trials if (t.optimizer, t.batch_size, t.index) == (row.optimizer, row.batch_size, 0))
        body = PREDICTION["optimizers"][row.optimizer]
        predicted = _loglog(dict(zip(body["batch_sizes"], body["learning_rates"])), row.batch_size)
        assert row.winning_learning_rate == winner.hyperparameters["learning_rate"]
        assert row.predicted_learning_rate == pytest.approx(predicted, rel=1e-12)
        assert row.ratio == pytest.approx(winner.hyperparameters["learning_rate"] / predicted, rel=1e-12)
        if row.optimizer == "momentum":
            beta = _loglog(dict(zip(body["batch_sizes"], body["momenta"])), row.batch_size, one_minus=True)
            assert row.predicted_momentum == pytest.approx(beta, rel=1e-12)
            assert row.winning_momentum == winner.hyperparameters["momentum"]
        else:
            assert math.isnan(row.predicted_momentum) and math.isnan(row.winning_momentum)
    fig = learning_rate_figure(analysis.best, prediction=analysis.prediction)
    dashed = {ax.get_ylabel(): sorted(line.get_label() for line in ax.lines if line.get_linestyle() == "--")
              for ax in fig.axes}
    assert dashed == {"optimal learning rate": ["NQM prediction: momentum", "NQM prediction: sgd"],
                      "effective learning rate α/(1−β)": ["NQM prediction: momentum", "NQM prediction: sgd"],
                      "1 − momentum β": ["NQM prediction: momentum"]}
    sgd_line = next(line for line in fig.axes[0].lines if line.get_label() == "NQM prediction: sgd")
    assert list(sgd_line.get_ydata()) == [0.2, 0.5, 1.0]
    page = write_report(folder, resamples=10, critical_resamples=5).html.read_text()
    assert "id='table-prediction_hyperparameters'" in page and "NQM-predicted vs winning hyperparameters" in page
