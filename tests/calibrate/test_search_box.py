"""``batchlab calibrate --search-space STUDY.toml``: predicted curves tuned inside a study's search box.

End to end on digits-cnn (sgd, and momentum with its momentum fixed as a spec may fix it): every
predicted hyperparameter lies in the box, the expected-risk steps are the exact crossing at the stored
hyperparameters on the stored NQM, and no box beats the free tuning; and the one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from batchlab.calibrate import pipeline
from batchlab.calibrate.pipeline import CalibrationConfig
from batchlab.calibrate.predict import SearchBox
from batchlab.cli import _register, app
from batchlab.errors import InputError
from batchlab.nqm.drift import Drift, drifted_steps

_register()
RUNNER = CliRunner()
SMALL = ("--top-k", "4", "--slq-probes", "2", "--slq-steps", "12", "--curvature-examples", "256",
         "--noise-examples", "256", "--chunk-size", "128", "--reference-tune", "3", "--reference-seeds", "1")
ARGS = ("--workload", "digits-cnn", "--batch-sizes", "16,64,256", "--optimizers", "sgd,momentum", *SMALL)
SPEC = '''name = "box"
workload = "digits-cnn"
batch_sizes = [16, 64]
trials = 2
[budget]
steps = 100
[optimizers.sgd]
search.learning_rate = [0.05, 0.2]
[optimizers.momentum]
search.learning_rate = [0.01, 0.1]
fixed = { momentum = 0.9 }
'''


@pytest.fixture(scope="module")
def boxed(tmp_path_factory):
    root = tmp_path_factory.mktemp("box")
    (root / "spec.toml").write_text(SPEC)
    free = RUNNER.invoke(app, ["calibrate", *ARGS, "--out", str(root / "free")])
    box = RUNNER.invoke(app, ["calibrate", *ARGS, "--out", str(root / "box"), "--search-space", str(root / "spec.toml")])
    return root, free, box


def test_boxed_curves_stay_in_the_box_and_are_exact(boxed):
    root, free, box = boxed
    assert free.exit_code == 0, free.output
    assert box.exit_code == 0, box.output
    prediction = json.loads((root / "box" / "prediction.json").read_text())
    stored = json.loads((root / "box" / "nqm_problem.json").read_text())
    free_prediction = json.loads((root / "free" / "prediction.json").read_text())
    from batchlab.nqm import Problem

    problem = Problem(h=np.array(stored["h"]), c=np.array(stored["c"]), s0=np.array(stored["s0"]),
                      weights=np.array(stored["weights"]))
    assert stored == json.loads((root / "free" / "nqm_problem.json").read_text())  # the box changes no measurement
    boxes = {"sgd": ((0.05, 0.2), None), "momentum": ((0.01, 0.1), 0.9)}
    for name, ((low, high), momentum) in boxes.items():
        entry = prediction["optimizers"][name]
        assert entry["search_space"]["learning_rate"] == [low, high]
        for key in ("learning_rates", "expected_learning_rates"):
            assert all(low * (1 - 1e-9) <= rate <= high * (1 + 1e-9) for rate in entry[key]), (name, key, entry[key])
        assert entry["momenta"] == [momentum] * 3
        for b, steps, rate in zip(entry["batch_sizes"], entry["expected_steps"], entry["expected_learning_rates"]):
            exact = drifted_steps(problem, Drift.none(problem.h.shape[0]), learning_rate=rate, momentum=momentum,
                                  batch_size=b, target=stored["target"], horizon=int(steps) + 2)
            assert exact == steps - prediction["delay"]["steps"], (name, b)  # counts start after the delay
        # a box is a subset of what the free tuning may use: never faster than it (up to its grid's step)
        for boxed_steps, free_steps in zip(entry["expected_steps"], free_prediction["optimizers"][name]["expected_steps"]):
            assert boxed_steps >= free_steps - 1, name


def test_search_space_refusals(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("calibrate computed something before failing")

    monkeypatch.setattr(pipeline, "run_reference", refuse)
    monkeypatch.setattr(pipeline, "measure", refuse)
    missing = RUNNER.invoke(app, ["calibrate", *ARGS, "--out", str(tmp_path / "o"),
                                  "--search-space", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "none.toml" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("[optimizers.sgd]\nsearch.learning_rate = [0.05, 0.2]\n", "")
                     .replace("optimizers.momentum", "optimizers.nesterov"))
    none = RUNNER.invoke(app, ["calibrate", *ARGS, "--out", str(tmp_path / "o"), "--search-space", str(other)])
    assert none.exit_code == 2 and "has none of the optimizers sgd, momentum" in none.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("boxes, extra, message", [
    ({"adam": SearchBox((1e-3, 1e-2), (0.9, 0.9))}, {"optimizers": ("sgd",)}, "not among the optimizers"),
    ({"adam": SearchBox((1e-3, 1e-2), (0.9, 0.9))}, {"preconditioner": "proxy"}, "needs its measured preconditioner"),
    ({"sgd": SearchBox((0.2, 0.1))}, {}, "learning rate needs 0 < low <= high"),
    ({"momentum": SearchBox((0.01, 0.1), (0.9, 1.0))}, {}, "momentum needs 0 <= low <= high < 1"),
    ({"momentum": SearchBox((0.01, 0.1))}, {}, "give momentum range"),
    ({"sgd": SearchBox((0.01, 0.1), (0.9, 0.9))}, {}, "no momentum range"),
])
def test_bad_boxes_are_refused_by_the_config(boxes, extra, message):
    with pytest.raises(InputError, match=message) as raised:
        CalibrationConfig(search_space=boxes, **extra).check()
    assert "\n" not in str(raised.value)


def test_box_momenta():
    assert SearchBox((0.1, 1.0)).momenta() == [0.0]
    assert SearchBox((0.1, 1.0), (0.9, 0.9)).momenta() == [0.9]
    grid = SearchBox((0.1, 1.0), (0.5, 0.99)).momenta(points=3)
    assert grid == pytest.approx([0.5, 1 - np.sqrt(0.5 * 0.01), 0.99])


def test_two_specs_share_out_their_optimizers_and_may_not_overlap(tmp_path):
    from batchlab.cli.calibrate import _search_boxes

    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(SPEC.split("[optimizers.momentum]")[0])
    second.write_text(SPEC.replace("[optimizers.sgd]\nsearch.learning_rate = [0.05, 0.2]\n", ""))
    boxes = _search_boxes([first, second], ("sgd", "momentum"))
    assert boxes == {"sgd": SearchBox((0.05, 0.2)), "momentum": SearchBox((0.01, 0.1), (0.9, 0.9))}
    with pytest.raises(InputError, match="momentum is in both"):
        _search_boxes([second, second], ("sgd", "momentum"))
    adam = tmp_path / "adam.toml"  # a study searches Adam's beta1 over its default range unless it fixes it
    adam.write_text(SPEC.split("[optimizers.sgd]")[0] + "[optimizers.adam]\nsearch.learning_rate = [1e-4, 0.03]\n")
    assert _search_boxes([adam], ("adam",))["adam"] == SearchBox((1e-4, 0.03), (0.5, 0.999))
    adam.write_text(adam.read_text() + "fixed = { beta1 = 0.8 }\n")
    assert _search_boxes([adam], ("adam",))["adam"] == SearchBox((1e-4, 0.03), (0.8, 0.8))
