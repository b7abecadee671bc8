"""From spectra to an NQM problem and target; predictions are the engine's numbers."""

import math

import jax
import numpy as np
import pytest

from batchlab.calibrate import CalibrationConfig, MeasureConfig, ReferenceConfig, calibrate, measure
from batchlab.calibrate.lanczos import Eigenpairs, SpectralDensity
from batchlab.calibrate.measure import Spectra
from batchlab.calibrate.model import Anchor, ModelConfig, build_problem
from batchlab.calibrate.noise import NoiseStats
from batchlab.calibrate.predict import PROXIES, Proxy, optimizer_entry, predict
from batchlab.errors import InputError
from batchlab.nqm import power_law
from batchlab.nqm.optimize import optimize
from batchlab.nqm.scaling import scaling_curve
from batchlab.workloads.registry import get_workload


def _spectra(trace_h_sigma=6.0, trace_sigma=5.0) -> Spectra:
    values = np.array([4.0, 2.0, 1.0])
    top = Eigenpairs(values, np.eye(3, 10), np.zeros(3), 10)
    nodes = np.array([[-0.05, 0.01, 0.1, 0.3], [-0.01, 0.02, 0.2, 0.4]])
    bulk = SpectralDensity(nodes, np.full((2, 4), 0.25), dim=1000)
    noise = NoiseStats(examples=100, noise=np.array([1.0, 0.5, 0.2]), noise_stderr=np.full(3, 0.01),
                       projections=np.zeros(3), trace_sigma=trace_sigma, gradient_norm_sq=1.0,
                       trace_h_sigma=trace_h_sigma, trace_h_sigma_stderr=0.0, g_h_g=1.0)
    return Spectra("hessian", 1003, top, bulk, noise, 100)


def test_problem_matches_the_measured_losses_and_noise():
    spectra = _spectra()
    built = build_problem(spectra, initial_loss=2.5, target_loss=0.25,
                          config=ModelConfig(initial="isotropic", loss_floor=0.05))
    p = built.problem
    assert p.initial_risk() == pytest.approx(2.45)
    assert built.target == pytest.approx(0.2)
    assert built.relative_target == pytest.approx(0.2 / 2.45)
    np.testing.assert_allclose(p.h[:3], [4.0, 2.0, 1.0])
    np.testing.assert_allclose(p.c[:3], [1.0, 0.5, 0.2])
    np.testing.assert_allclose(p.s0, p.s0[0])  # isotropic
    assert built.bulk_directions == pytest.approx(750.0)  # 6 of 8 nodes positive, mass 3/4 of 1000
    assert built.bulk_noise_rule == "curvature-weighted"
    assert np.sum(p.weights * p.h * p.c) == pytest.approx(6.0, rel=1e-9)  # tr(HΣ) is reproduced
    total = build_problem(spectra, initial_loss=2.5, target_loss=0.25, config=ModelConfig(bulk_noise="total"))
    assert np.sum(total.problem.weights * total.problem.c) == pytest.approx(5.0, rel=1e-9)  # tr Σ is reproduced
    equal = build_problem(spectra, initial_loss=2.5, target_loss=0.25, config=ModelConfig(initial="equal-risk"))
    np.testing.assert_allclose(equal.problem.h * equal.problem.s0, equal.problem.h[0] * equal.problem.s0[0])
    assert equal.initial_rule == "equal-risk"


def test_noise_ratio_falls_back_to_the_top_k_ratio():
    built = build_problem(_spectra(trace_h_sigma=1.0), initial_loss=2.0, target_loss=0.1)
    assert built.bulk_noise_rule == "top-k"
    assert built.bulk_noise_ratio == pytest.approx(1.7 / 7.0)
    assert built.initial_rule == "isotropic"  # no anchor: the fit falls back


@pytest.mark.parametrize("kind, precond, steps", [("sgd", 0.0, 60), ("momentum", 0.5, 5)])
def test_fitted_initial_state_reproduces_the_tuned_reference_run(kind, precond, steps):
    anchor = Anchor(kind, precond, batch_size=64.0, steps=steps)
    built = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, anchor=anchor)
    assert built.initial_rule == "fit"
    tuned = optimize(built.problem, kind, batch_size=64.0, target=built.target, precond=precond)
    assert abs(tuned.steps - steps) <= 1
    isotropic = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, config=ModelConfig(initial="isotropic"))
    isotropic_steps = optimize(isotropic.problem, kind, batch_size=64.0, target=isotropic.target,
                               precond=precond).steps
    # more risk in the stiff directions (a > 1) means fewer steps: the fit moves a the right way
    assert (built.initial_exponent > 1.0) == (isotropic_steps > steps)


def test_a_bias_corrected_anchor_is_fitted_with_adams_first_moment():
    """Adam's anchor counts the NQM's steps with its first moment's bias correction: the fit reproduces
    the anchor under it (tuned with :func:`tuned_drifted`, whose optimum here is no slower than the
    heavy ball's without it), so its initial state differs from the uncorrected fit's."""
    from batchlab.calibrate.model import anchor_steps
    from batchlab.nqm.drift import Drift, tuned_drifted

    plain = Anchor("momentum", 0.0, batch_size=64.0, steps=12)
    corrected = Anchor("momentum", 0.0, batch_size=64.0, steps=12, bias_correction=True)
    built = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, anchor=corrected)
    assert built.initial_rule == "fit"
    assert abs(built.anchor_steps - 12) <= 1
    centre = optimize(built.problem, "momentum", batch_size=64.0, target=built.target)
    retuned = tuned_drifted(built.problem, Drift.none(built.problem.h.shape[0]), "momentum", batch_size=64.0,
                            target=built.target, learning_rate=centre.learning_rate, momentum=centre.momentum,
                            horizon=int(max(4 * centre.steps, 50)), bias_correction=True)
    assert anchor_steps(built.problem, corrected, built.target) == retuned.steps == built.anchor_steps
    assert anchor_steps(built.problem, plain, built.target) == centre.steps
    other = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, anchor=plain)
    assert other.initial_exponent != built.initial_exponent
    with pytest.raises(InputError, match="precond 0"):
        anchor_steps(built.problem, Anchor("momentum", 0.5, batch_size=64.0, steps=12, bias_correction=True),
                     built.target)


def test_bad_losses_are_input_errors():
    with pytest.raises(InputError):
        build_problem(_spectra(), initial_loss=1.0, target_loss=2.0)
    with pytest.raises(InputError):
        build_problem(_spectra(), initial_loss=1.0, target_loss=0.1, config=ModelConfig(loss_floor=0.5))
    with pytest.raises(InputError):
        ModelConfig(initial="random").check()


def test_predictions_are_the_engines_scaling_curves():
    problem = power_law(60)
    sizes = [4, 64, 1024]
    curves = predict(problem, target=0.05, batch_sizes=sizes,
                     optimizers={"sgd": PROXIES["sgd"], "adam": PROXIES["adam"]})
    for name, kind, p in (("sgd", "sgd", 0.0), ("adam", "momentum", 0.5)):
        engine = scaling_curve(problem, kind, sizes, target=0.05, precond=p)
        assert curves[name].steps.tolist() == engine.steps.tolist()
        assert [r.learning_rate for r in curves[name].rows] == [r.learning_rate for r in engine.rows]
        entry = optimizer_entry(curves[name])
        assert entry["nqm_kind"] == kind and entry["precond"] == p
        assert entry["batch_sizes"] == [4.0, 64.0, 1024.0]
        assert entry["steps"] == [int(s) for s in engine.steps]
        assert entry["critical_batch_size"]["b_noise"] == pytest.approx(engine.critical.fit.b_noise)
    with pytest.raises(InputError):
        predict(problem, target=0.0, batch_sizes=sizes)
    with pytest.raises(InputError):
        predict(problem, target=0.05, batch_sizes=sizes, optimizers={"x": Proxy("adamw", 0.0)})


def test_calibration_on_nqm_sampled_recovers_the_known_problems_curve():
    """Measured spectra + exact losses + an exact anchor: the calibrated NQM reproduces the known one."""
    workload = get_workload("nqm-sampled", dim=100)
    known = workload.spectrum
    sizes = (4, 64, 1024)
    target = workload.target_value * known.initial_risk()
    params = workload.init_params(key=jax.random.PRNGKey(0))
    spectra = measure(workload, params, MeasureConfig(top_k=20, curvature_examples=64, noise_examples=4096,
                                                      chunk_size=512, slq_probes=6), key=jax.random.PRNGKey(1))
    anchor_steps = int(optimize(known, "sgd", batch_size=64.0, target=target).steps)
    built = build_problem(spectra, initial_loss=known.initial_risk(), target_loss=target,
                          anchor=Anchor("sgd", 0.0, 64.0, anchor_steps))
    assert built.initial_rule == "fit" and 0.7 < built.initial_exponent < 1.3  # the truth is a = 1
    predicted = scaling_curve(built.problem, "sgd", sizes, target=built.target)
    engine = scaling_curve(known, "sgd", sizes, target=target)
    np.testing.assert_allclose(predicted.steps, engine.steps, rtol=0.15)
    assert 0.8 < predicted.critical.fit.b_noise / engine.critical.fit.b_noise < 1.25


def test_whole_pipeline_on_nqm_sampled_is_within_a_factor_two_of_the_known_curve():
    """End to end: a tuned, sampled reference run (first hits of a noisy risk come early) anchors the fit."""
    workload = get_workload("nqm-sampled", dim=100)
    sizes = (4, 64, 1024)
    config = CalibrationConfig(
        reference=ReferenceConfig(batch_size=64, tune_points=7),
        measure=MeasureConfig(top_k=20, curvature_examples=64, noise_examples=2048, chunk_size=512, slq_probes=6),
        batch_sizes=sizes, optimizers=("sgd",))
    result = calibrate(workload, config, seed=0)
    assert result.nqm.initial_rule == "fit"
    known = workload.spectrum
    engine = scaling_curve(known, "sgd", sizes, target=workload.target_value * known.initial_risk())
    ratio = result.curves["sgd"].steps / engine.steps
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    assert math.isfinite(result.spectra.noise.b_noise)


def test_an_anchor_at_the_runs_momentum_is_fitted_with_the_rate_alone():
    """A reference run that tuned only its rate (Adam at beta1 = 0.9): the fit makes the NQM's best rate *at
    that momentum* reproduce the run, checked against an independent dense scan of rates at momentum 0.9
    (with the bias correction), and the initial state differs from the freely tuned anchor's."""
    from batchlab.calibrate.model import anchor_steps
    from batchlab.nqm.drift import Drift, drifted_steps

    fixed = Anchor("momentum", 0.0, batch_size=64.0, steps=12, bias_correction=True, momentum=0.9)
    free = Anchor("momentum", 0.0, batch_size=64.0, steps=12, bias_correction=True)
    built = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, anchor=fixed)
    assert built.initial_rule == "fit" and abs(built.anchor_steps - 12) <= 1
    problem = built.problem
    limit = 2 * 1.9 / problem.h.max()
    scan = min(drifted_steps(problem, Drift.none(problem.h.shape[0]), learning_rate=r, momentum=0.9, batch_size=64.0,
                             target=built.target, horizon=400, bias_correction=True)
               for r in np.geomspace(limit * 1e-4, limit, 600))
    assert abs(scan - anchor_steps(problem, fixed, built.target)) <= 1
    other = build_problem(_spectra(), initial_loss=2.0, target_loss=0.1, anchor=free)
    assert other.initial_exponent != pytest.approx(built.initial_exponent, abs=1e-3)
    with pytest.raises(InputError, match="momentum kind"):
        anchor_steps(problem, Anchor("sgd", 0.0, batch_size=64.0, steps=12, momentum=0.9), built.target)
