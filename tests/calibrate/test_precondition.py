"""Measured preconditioners against independent computations: Adam's diagonal from a hand recurrence,
K-FAC's blockwise ``P^{-1/2}`` against kfac-jax's own inverse and a dense Kronecker product, the
preconditioned spectrum and noise against dense matrices, and the fitted exponent."""

import dataclasses
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from batchlab.calibrate import CalibrationConfig, ModelConfig, ReferenceConfig, calibrate, read_nqm, write_calibration
from batchlab.calibrate.exponent import fit_exponent, rank_function
from batchlab.calibrate.lanczos import top_eigenpairs
from batchlab.calibrate.measure import MeasureConfig, measure
from batchlab.calibrate.noise import gradient_noise
from batchlab.calibrate.operators import chunk_batch, hessian_operator, preconditioned_operator
from batchlab.calibrate.precondition import (
    applied_updates, drift_multipliers, relative_trace,
    DiagonalBlock, KroneckerBlock, Preconditioner, adam_preconditioner, extract_preconditioner,
)
from batchlab.calibrate.model import kept_top
from batchlab.errors import InputError
from batchlab.nqm.drift import Drift, drifted_steps
from batchlab.optim.kfac import curvature_estimator
from batchlab.train import TrainOptions, train

from toys import ToyClassifier, ToyConvClassifier

from .conftest import dense_hessian

STEPS = 6  # K-FAC refreshes its cached inverse at its 6th update (counter 5): cache and factors then agree
BATCH = 32


def _run(workload, optimizer, hyperparameters):
    """A short run keeping the checkpoints after 0 … STEPS updates (target never met: all steps run)."""
    result = train(workload, optimizer, hyperparameters, BATCH, STEPS, 0, target=-1.0,
                   options=TrainOptions(checkpoints=tuple(range(STEPS + 1))))
    return result.checkpoints


@pytest.fixture(scope="module")
def adam_run(tiny):
    workload, _, _ = tiny
    return _run(workload, "adam", {"learning_rate": 0.01, "beta2": 0.99, "epsilon": 1e-3})


@pytest.fixture(scope="module")
def kfac_run(tiny):
    workload, _, _ = tiny
    return _run(workload, "kfac", {"learning_rate": 0.05, "damping": 0.03})


def _dense(function, dim: int) -> np.ndarray:
    """The matrix of a linear map on flat float32 vectors, column by column."""
    return np.asarray(jax.vmap(function)(jnp.eye(dim, dtype=jnp.float32)), np.float64).T


def test_adam_diagonal_equals_a_hand_recurrence_of_the_second_moment(tiny, adam_run):
    """``D = √(ν/(1 − β₂ᴺ)) + ε`` with ν accumulated by hand (float64) from the gradients of the very
    minibatches the run used (``train``'s key convention), at the parameters it had at each step."""
    workload, _, _ = tiny
    key_data = jax.random.split(jax.random.PRNGKey(0), 3)[0]
    data = workload.train_data()
    grad = jax.jit(jax.grad(workload.loss))
    nu = 0.0
    for t in range(STEPS):
        batch = workload.sample_batch_from(data, key=jax.random.fold_in(key_data, t), batch_size=BATCH)
        g = np.asarray(ravel_pytree(grad(adam_run[t].params, batch))[0], np.float64)
        nu = 0.99 * nu + 0.01 * g**2
    expected = np.sqrt(nu / (1 - 0.99**STEPS)) + 1e-3
    p = adam_preconditioner(adam_run[STEPS].state)
    (block,) = p.blocks
    np.testing.assert_allclose(block.diagonal, expected, rtol=2e-5)
    assert p.summary["count"] == STEPS and p.summary["beta2"] == pytest.approx(0.99)
    v = np.random.default_rng(0).normal(size=p.dim).astype(np.float32)
    np.testing.assert_allclose(p.matrix_power(-0.5)(v), v / np.sqrt(expected), rtol=2e-5)
    np.testing.assert_allclose(p.matrix_power(1.0)(v), v * expected, rtol=2e-5)


def test_no_preconditioner_before_the_first_update(tiny, adam_run, kfac_run):
    workload, params, batch = tiny
    with pytest.raises(InputError, match="before the first update"):
        adam_preconditioner(adam_run[0].state)
    with pytest.raises(InputError, match="before the first update"):
        extract_preconditioner("kfac", workload, params, kfac_run[0].state, hyperparameters={}, batch=batch)
    with pytest.raises(InputError, match="no measured preconditioner for 'lion'"):
        extract_preconditioner("lion", workload, params, adam_run[1].state, hyperparameters={}, batch=batch)


@pytest.fixture(scope="module")
def kfac_measured(tiny, kfac_run):
    workload, _, batch = tiny
    snapshot = kfac_run[STEPS]
    p = extract_preconditioner("kfac", workload, snapshot.params, snapshot.state,
                               hyperparameters={"adaptive": "off"}, batch=batch)
    estimator = curvature_estimator(workload, snapshot.params, batch, key=jax.random.PRNGKey(0))
    return snapshot, p, estimator


def _check_against_kfac_jax(snapshot, p, estimator):
    _, unravel = ravel_pytree(snapshot.params)
    root = jax.jit(p.matrix_power(-0.5))
    for seed in range(3):
        v = jax.random.normal(jax.random.PRNGKey(seed), (p.dim,))
        ours = np.asarray(root(root(v)), np.float64)
        theirs = estimator.multiply_matpower(snapshot.state.inner.estimator_state, unravel(v), identity_weight=0.03,
                                             power=-1.0, exact_power=False, use_cached=True, pmap_axis_name=None)
        theirs = np.asarray(ravel_pytree(theirs)[0], np.float64)
        assert np.linalg.norm(ours - theirs) < 1e-4 * np.linalg.norm(theirs)


def test_kfac_inverse_root_squares_to_the_inverse_kfac_jax_applies(kfac_measured):
    """``P^{-1/2} P^{-1/2} g`` equals kfac-jax's own cached-inverse product (its update direction)."""
    snapshot, p, estimator = kfac_measured
    assert p.summary["damping"] == pytest.approx(0.03) and len(p.blocks) == 2
    _check_against_kfac_jax(snapshot, p, estimator)


def test_kfac_inverse_root_on_a_convolution_with_its_location_scale():
    """The same on a convolution block (batchlab's fast block: scale = 16 output locations)."""
    workload = ToyConvClassifier()
    snapshot = _run(workload, "kfac", {"learning_rate": 0.05, "damping": 0.03})[STEPS]
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=BATCH)
    p = extract_preconditioner("kfac", workload, snapshot.params, snapshot.state, hyperparameters={}, batch=batch)
    assert [(b["block"], b["scale"]) for b in p.summary["blocks"]] == [("FastConv2DBlock", 16.0),
                                                                        ("DenseTwoKroneckerFactored", 1.0)]
    estimator = curvature_estimator(workload, snapshot.params, batch, key=jax.random.PRNGKey(0))
    _check_against_kfac_jax(snapshot, p, estimator)


def test_kfac_blockwise_inverse_root_equals_a_dense_kronecker_product(kfac_measured):
    """Dense ``P`` assembled with ``np.kron`` from the blocks (and checked against kfac-jax's ``P v``);
    its inverse square root by a dense eigendecomposition equals the blockwise one."""
    snapshot, p, estimator = kfac_measured
    dense = np.zeros((p.dim, p.dim))
    for block in p.blocks:
        assert isinstance(block, KroneckerBlock)
        rows = block.indices.ravel()  # row-major: X[i, j] ↔ rows[i * cols + j], kron(A, G) acts on that order
        dense[np.ix_(rows, rows)] = block.scale * np.kron(block.left, block.right)
    _, unravel = ravel_pytree(snapshot.params)
    v = jax.random.normal(jax.random.PRNGKey(7), (p.dim,))
    theirs = estimator.multiply_matpower(snapshot.state.inner.estimator_state, unravel(v), identity_weight=0.03,
                                         power=1, exact_power=False, use_cached=False, pmap_axis_name=None)
    np.testing.assert_allclose(dense @ np.asarray(v, np.float64), np.asarray(ravel_pytree(theirs)[0]), rtol=1e-4,
                               atol=1e-5 * np.abs(dense).max())
    values, vectors = np.linalg.eigh(dense)
    inverse_root = (vectors / np.sqrt(values)) @ vectors.T
    np.testing.assert_allclose(_dense(p.matrix_power(-0.5), p.dim), inverse_root,
                               atol=2e-5 * np.abs(inverse_root).max())
    low, high = p.eigenvalue_range()
    assert low == pytest.approx(values.min(), rel=1e-6) and high == pytest.approx(values.max(), rel=1e-6)


def _dense_kfac(p) -> np.ndarray:
    dense = np.zeros((p.dim, p.dim))
    for block in p.blocks:
        rows = block.indices.ravel()
        dense[np.ix_(rows, rows)] = block.scale * np.kron(block.left, block.right)
    return dense


def test_drift_multipliers_equal_dense_quadratic_forms(tiny, kfac_run):
    """``u_iᵀ P_c^{1/2} P_a⁻¹ P_c^{1/2} u_i`` and the bulk mean ``(tr R − Σ m_i) / (d − k)`` against dense
    matrices: K-FAC's inverse applied at update 0 (snapshot 1) against the checkpoint's (snapshot 6)."""
    workload, _, batch = tiny
    ps = {s: extract_preconditioner("kfac", workload, kfac_run[s].params, kfac_run[s].state, hyperparameters={},
                                    batch=batch) for s in (1, STEPS)}
    checkpoint, applied = _dense_kfac(ps[STEPS]), _dense_kfac(ps[1])
    values, vectors = np.linalg.eigh(checkpoint)
    half = (vectors * np.sqrt(values)) @ vectors.T
    relative = half @ np.linalg.inv(applied) @ half
    assert relative_trace(ps[STEPS], ps[1]) == pytest.approx(np.trace(relative), rel=1e-6)
    u = np.linalg.qr(np.random.default_rng(0).normal(size=(ps[1].dim, 4)))[0].T
    top, bulk = drift_multipliers(ps[STEPS], ps[1], u)
    np.testing.assert_allclose(top, np.einsum("id,de,ie->i", u, relative, u), rtol=2e-4)
    assert bulk == pytest.approx((np.trace(relative) - np.einsum("id,de,ie->i", u, relative, u).sum())
                                 / (ps[1].dim - 4), rel=1e-4)
    assert not np.allclose(top, 1.0, atol=1e-3)  # the factors did change over 5 updates
    same_top, same_bulk = drift_multipliers(ps[STEPS], ps[STEPS], u)  # no drift: all ones
    np.testing.assert_allclose(same_top, 1.0, rtol=1e-5)
    assert same_bulk == pytest.approx(1.0, rel=1e-5)
    diag = Preconditioner("adam", 3, (DiagonalBlock(np.arange(3), np.array([1.0, 4.0, 9.0])),), {})
    other = Preconditioner("adam", 3, (DiagonalBlock(np.arange(3), np.array([2.0, 2.0, 3.0])),), {})
    assert relative_trace(diag, other) == pytest.approx(0.5 + 2.0 + 3.0)
    with pytest.raises(InputError, match="block structures"):
        relative_trace(diag, ps[1])


def test_applied_updates():
    assert applied_updates("kfac", 16) == (0, 5, 10, 15)  # the registry's inverse_update_period = 5
    assert applied_updates("kfac", 15) == (0, 5, 10) and applied_updates("kfac", 1) == (0,)
    with pytest.raises(InputError, match="modelled for kfac only, not 'adam'"):
        applied_updates("adam", 10)


def test_blocks_must_cover_every_parameter_once():
    with pytest.raises(InputError, match="cover"):
        Preconditioner("adam", 3, (DiagonalBlock(np.array([0, 1]), np.ones(2)),), {})
    with pytest.raises(InputError, match="cover"):
        Preconditioner("adam", 2, (DiagonalBlock(np.array([0, 1]), np.ones(2)),
                                   DiagonalBlock(np.array([1]), np.ones(1))), {})


@pytest.fixture(scope="module")
def preconditioned(tiny, kfac_measured):
    """The K-FAC preconditioner, the dense Hessian and the dense ``M = P^{-1/2} H P^{-1/2}`` at its checkpoint."""
    workload, _, batch = tiny
    snapshot, p, _ = kfac_measured
    hessian = dense_hessian(workload, snapshot.params, batch)
    root = _dense(p.matrix_power(-0.5), p.dim)
    return workload, snapshot.params, batch, p, root, root @ hessian @ root


def test_preconditioned_lanczos_finds_the_dense_eigenvalues(preconditioned):
    workload, params, batch, p, _, dense = preconditioned
    config = MeasureConfig(top_k=4, curvature="hessian", curvature_examples=64, noise_examples=64, chunk_size=64,
                           slq_probes=8, slq_steps=16, sketches=4)
    # measure draws its own curvature batch: compare with the dense matrix of that same batch
    k_curv = jax.random.split(jax.random.PRNGKey(3), 5)[0]
    drawn = workload.sample_batch(key=k_curv, batch_size=64)
    hessian = dense_hessian(workload, params, drawn)
    root = _dense(p.matrix_power(-0.5), p.dim)
    exact = np.sort(np.linalg.eigvalsh(root @ hessian @ root))[::-1]
    spectra = measure(workload, params, config, key=jax.random.PRNGKey(3), preconditioner=p)
    np.testing.assert_allclose(spectra.top.values, exact[:4], rtol=1e-4)
    assert spectra.preconditioner["optimizer"] == "kfac"
    # the bulk describes the other d − 4 eigenvalues: its mean is their mean
    assert spectra.bulk.moment(1) == pytest.approx(exact[4:].mean(), rel=0.25)


def test_preconditioned_noise_equals_the_dense_transform(preconditioned):
    """Noise along the top eigenvectors of ``M``, ``tr Σ̃``, ``|G̃|²`` and ``tr(M Σ̃)`` of the per-example
    gradients ``P^{-1/2} g`` equal brute force with the dense ``P^{-1/2}``."""
    workload, params, batch, p, root, dense = preconditioned
    op = preconditioned_operator(hessian_operator(workload, params, batch, chunk_size=64), p.matrix_power(-0.5))
    top = top_eigenpairs(op, 3, key=jax.random.PRNGKey(0))
    stats = gradient_noise(workload, params, chunk_batch(batch, 32), top, op, key=jax.random.PRNGKey(2), sketches=64,
                           transform=p.matrix_power(-0.5))
    theta, unravel = ravel_pytree(params)
    single = jax.jit(jax.grad(lambda t, x, y: workload.loss(unravel(t), {"inputs": x[None], "targets": y[None]})))
    g = np.stack([np.asarray(single(theta, batch["inputs"][j], batch["targets"][j]), np.float64) for j in range(64)])
    g = g @ root  # P^{-1/2} g_j (root is symmetric)
    mean, centred = g.mean(axis=0), g - g.mean(axis=0)
    np.testing.assert_allclose(stats.noise, (g @ top.vectors.T).var(axis=0, ddof=1), rtol=1e-3)
    trace_sigma = np.sum(centred**2) / 63
    assert stats.trace_sigma == pytest.approx(trace_sigma, rel=1e-3)
    assert stats.gradient_norm_sq == pytest.approx(mean @ mean - trace_sigma / 64, rel=1e-2, abs=1e-5)
    exact = np.einsum("jd,de,je->", centred, dense, centred) / 63
    assert abs(stats.trace_h_sigma - exact) < 4 * stats.trace_h_sigma_stderr + 1e-3 * abs(exact)


def test_rank_function_places_top_eigenvalues_at_their_rank_and_atoms_mid_range():
    positions, values = rank_function(np.array([1.0, 5.0, 0.1]), np.array([1.0, 1.0, 10.0]))
    np.testing.assert_array_equal(values, [5.0, 1.0, 0.1])
    np.testing.assert_array_equal(positions, [1.0, 2.0, 2 + 5.5])  # the atom stands for ranks 3 … 12


@settings(max_examples=40, deadline=None)
@given(p=st.floats(-0.5, 0.95), scale=st.floats(1e-3, 1e3), k=st.integers(2, 20), atoms=st.integers(0, 30),
       seed=st.integers(0, 2**16))
def test_fitted_exponent_recovers_an_exact_power(p, scale, k, atoms, seed):
    """If ``M``'s spectrum is ``scale · h^(1−p)`` entry by entry (P = H^-p up to scale; p < 1 keeps the
    order), the fit returns p exactly, with r² = 1, whatever the multiplicities."""
    rng = np.random.default_rng(seed)
    top = np.sort(rng.uniform(1.0, 100.0, k))[::-1]
    bulk = rng.uniform(1e-4, 0.9, atoms)
    values = np.concatenate([top, bulk])
    weights = np.concatenate([np.ones(k), rng.uniform(1.0, 500.0, atoms)])
    fit = fit_exponent((values, weights), (scale * values ** (1 - p), weights), top=(top, scale * top ** (1 - p)))
    assert fit.exponent == pytest.approx(p, abs=1e-6)
    assert fit.exponent_top_k == pytest.approx(p, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.intercept == pytest.approx(np.log(scale), abs=1e-6)


@pytest.mark.slow
def test_measured_calibration_end_to_end_leaves_sgd_and_momentum_as_in_proxy_mode(tmp_path):
    """A whole calibration with measured adam and kfac on a tiny classifier: each gets its own run,
    checkpoint, measurement in its coordinates, NQM (whose top-k are that measurement's) and exponent;
    the files carry them; sgd and momentum (and the reference measurement) equal a proxy-mode run's."""
    config = CalibrationConfig(
        reference=ReferenceConfig(batch_size=32, tune_points=0, seeds=1, hyperparameters={"learning_rate": 0.5}),
        measure=MeasureConfig(top_k=3, curvature_examples=64, noise_examples=64, chunk_size=64, slq_probes=2,
                              slq_steps=12, sketches=4),
        model=ModelConfig(initial="isotropic"),  # the fitted start is tested elsewhere and costs NQM searches
        batch_sizes=(8.0, 64.0), loss_examples=64,
        optimizer_hyperparameters={"adam": {"learning_rate": 0.03}, "kfac": {"learning_rate": 0.1}}, drift=())
    assert dataclasses.replace(config, drift=None).drifting == ("kfac",)  # the default: K-FAC's, where measured
    assert dataclasses.replace(config, drift=None, preconditioner="proxy", optimizer_hyperparameters={}).drifting == ()
    workload = ToyClassifier()
    result = calibrate(workload, config, seed=0)
    assert tuple(result.measured) == ("adam", "kfac")
    files = write_calibration(result, tmp_path)
    prediction = json.loads(files["prediction"].read_text())
    spectra = json.loads(files["spectra"].read_text())
    problems = json.loads(files["nqm_problem"].read_text())
    assert files["preconditioned_figure"].read_bytes()[:4] == b"\x89PNG"
    for name, measured in result.measured.items():
        entry, run = prediction["optimizers"][name], measured.reference
        assert entry["preconditioner"] == "measured" and entry["nqm_kind"] == "momentum" and entry["precond"] == 0.0
        assert entry["reference"]["optimizer"] == name and entry["checkpoint_step"] == run.target_step
        assert np.isfinite(entry["fitted_exponent"]) and np.isfinite(entry["fitted_exponent_top_k"])
        assert all(s is not None and s > 0 for s in entry["steps"])
        own = spectra["preconditioned"][name]
        assert own["preconditioner"]["optimizer"] == name and own["exponent"]["exponent"] == entry["fitted_exponent"]
        k = len(own["eigenvalues"])
        np.testing.assert_array_equal(problems["preconditioned"][name]["h"][:k], own["eigenvalues"])
        assert problems["preconditioned"][name]["target"] == entry["target"]["nqm_target"]
        own_problem, own_target = read_nqm(tmp_path, name)  # read back: its own NQM, not the reference's
        for key in ("h", "c", "s0", "weights"):
            np.testing.assert_array_equal(getattr(own_problem, key), problems["preconditioned"][name][key])
        assert own_target == entry["target"]["nqm_target"] and own_target == measured.nqm.target
        assert entry["anchor"]["steps"] == run.median_steps == run.target_step  # its own run (one seed)
        assert entry["units"] == "optimizer"
        assert entry["bias_correction"] == (name == "adam")  # Adam's first moment is bias-corrected
        # the rates are the optimizer's: K-FAC's α, Adam's lr = α / (1 − β); those of the first hit
        # (the steps a study measures) and of the expected risk's optimum
        for key, rows in (("learning_rates", result.first_hits[name]), ("expected_learning_rates",
                                                                        result.curves[name].rows)):
            expected = [r.learning_rate / (1.0 - r.momentum) if name == "adam" else r.learning_rate for r in rows]
            np.testing.assert_allclose(entry[key], expected, rtol=1e-12)
        assert entry.get("nqm_learning_rates", entry["learning_rates"]) == [
            h.learning_rate for h in result.first_hits[name]]
        assert [h.expected_steps for h in result.first_hits[name]] == list(result.curves[name].steps)
    # Adam's curve is tuned with its first moment's bias correction: its expected-risk steps, recomputed
    adam = result.measured["adam"].nqm
    for row in result.curves["adam"].rows:
        assert drifted_steps(adam.problem, Drift.none(adam.problem.h.shape[0]), learning_rate=row.learning_rate,
                             momentum=row.momentum, batch_size=row.batch_size, target=adam.target,
                             horizon=int(4 * row.steps + 50), bias_correction=True) == row.steps
    proxy = calibrate(workload, dataclasses.replace(config, preconditioner="proxy", optimizer_hyperparameters={}),
                      seed=0)
    assert proxy.measured == {}
    old = proxy.prediction_dict()
    for name in ("sgd", "momentum"):
        assert old["optimizers"][name] == prediction["optimizers"][name]
    assert old["optimizers"]["adam"]["precond"] == 0.5 and "preconditioner" not in old["optimizers"]["adam"]
    assert old["optimizers"]["adam"]["units"] == old["optimizers"]["kfac"]["units"] == "proxy"
    assert old["optimizers"]["sgd"]["units"] == old["optimizers"]["momentum"]["units"] == "optimizer"
    ours = {k: v for k, v in result.spectra_dict().items() if k not in ("timings", "preconditioned")}
    assert ours == {k: v for k, v in proxy.spectra_dict().items() if k != "timings"}
    assert proxy.nqm_dict() == {k: v for k, v in result.nqm_dict().items() if k != "preconditioned"}

    # K-FAC's drift (the inverses its reference run applied before the checkpoint): the same calibration
    # with it keeps the prediction without it as drift.fresh, exactly, and leaves adam alone
    drifted = calibrate(workload, dataclasses.replace(config, drift=("kfac",)), seed=0)
    pred = drifted.prediction_dict()
    entry, before = pred["optimizers"]["kfac"], prediction["optimizers"]["kfac"]
    for key in ("steps", "learning_rates", "momenta", "critical_batch_size", "expected_steps"):
        assert entry["drift"]["fresh"][key] == before[key]
    assert "drift" not in pred["optimizers"]["adam"] and pred["optimizers"]["adam"] == prediction["optimizers"]["adam"]
    m = drifted.measured["kfac"]
    checkpoint = m.reference.checkpoint_step
    assert [seg["update"] for seg in entry["drift"]["segments"]] == list(range(0, checkpoint, 5))
    assert entry["drift"]["replay_difference"] < 1e-4  # the replay that read the states retraced the run
    assert m.drift.length == checkpoint
    keep = kept_top(m.spectra.top.values, config.model.min_curvature)
    first = entry["drift"]["segments"][0]
    expected_row = np.r_[np.array(first["top"])[keep], np.full(m.nqm.problem.h.shape[0] - keep.sum(), first["bulk"])]
    np.testing.assert_allclose(m.drift.multipliers[0], expected_row)
    for row, steps in zip(drifted.curves["kfac"].rows, entry["expected_steps"]):
        again = drifted_steps(m.nqm.problem, m.drift, learning_rate=row.learning_rate, momentum=row.momentum,
                              batch_size=row.batch_size, target=m.nqm.target, horizon=int(4 * steps + 50))
        assert again == steps
    # the command's summary names the drift and the prediction without it
    from rich.console import Console

    from batchlab.cli.calibrate import _render

    console = Console(file=io.StringIO(), width=200)
    _render(console, drifted, write_calibration(drifted, tmp_path / "drifted"))
    text = console.file.getvalue()
    assert f"kfac: follows the {len(entry['drift']['segments'])} preconditioner(s)" in text
    assert "kfac (measured P, drift)" in text and "adam (measured P, bias-corrected)" in text
    with pytest.raises(InputError, match="drift asked for kfac"):
        dataclasses.replace(config, preconditioner="proxy", drift=("kfac",)).check()
