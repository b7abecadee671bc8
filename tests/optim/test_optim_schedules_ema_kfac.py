"""Schedules against hand formulas; the EMA wrapper against a NumPy recursion; K-FAC limits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.optim import bind, get_optimizer, learning_rate_factor, prepare
from tests.toys import ToyClassifier, ToyQuadratic


def _hyper(**values):
    base = dict(horizon=100.0, warmup_fraction=0.0, decay_fraction=1.0, end_factor=0.0)
    return {k: jnp.float32(v) for k, v in (base | values).items()}


@pytest.mark.parametrize("t", [0, 1, 25, 50, 99, 100, 150])
def test_schedule_values(t):
    factor = lambda schedule, **kw: float(learning_rate_factor(jnp.int32(t), _hyper(**kw), schedule=schedule))
    assert factor("constant") == 1.0
    p = min(t / 100, 1.0)
    assert factor("linear_decay", end_factor=0.1) == pytest.approx(1 - 0.9 * p, abs=1e-6)
    assert factor("cosine", end_factor=0.1) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * p)), abs=1e-6)
    # decay over the first half of the budget, then flat at end_factor
    assert factor("linear_decay", decay_fraction=0.5, end_factor=0.2) == pytest.approx(
        1 - 0.8 * min(t / 50, 1.0), abs=1e-6)
    # 10 warmup steps: (t+1)/10 up to 1, then the decay runs from step 10 to 100
    warm = min(1.0, (t + 1) / 10)
    decay = 1 - min(max(t - 10, 0) / 90, 1.0)
    assert factor("linear_decay", warmup_fraction=0.1) == pytest.approx(warm * decay, abs=1e-6)
    assert factor("constant", warmup_fraction=0.1) == pytest.approx(warm, abs=1e-6)


@pytest.mark.parametrize("name", ["sgd+ema", "adam+ema"])
def test_ema_wrapper_matches_numpy_recursion_for_several_decays(name):
    workload = ToyClassifier()
    workload.load()
    prepared = prepare(get_optimizer(name), {"learning_rate": 0.05, "ema_decay": 0.5},
                       extra_ema_decays=(0.9, 0.0))
    assert prepared.ema_decays == (0.5, 0.9, 0.0)
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    state = stepper.init(params, prepared.arrays(max_steps=10))
    averages = [jax.tree.map(np.asarray, params) for _ in range(3)]  # θ̃(0) = θ(0)
    step = jax.jit(stepper.step)
    for t in range(4):
        params, state, _ = step(params, state, workload.sample_batch(key=jax.random.PRNGKey(t), batch_size=8))
        for k, gamma in enumerate(prepared.ema_decays):
            averages[k] = jax.tree.map(lambda a, p: gamma * a + (1 - gamma) * np.asarray(p), averages[k], params)
    for k in range(3):
        got = jax.tree.map(lambda a: a[k], state.averages)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(averages[k])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jax.tree.leaves(stepper.evaluation_params(params, state))[0],
                                  jax.tree.leaves(state.averages)[0][0])
    # decay 0 is the raw parameters
    for a, p in zip(jax.tree.leaves(jax.tree.map(lambda a: a[2], state.averages)), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, p, rtol=1e-6, atol=1e-7)


def test_kfac_with_huge_damping_is_a_gradient_step():
    """Δ = −α (F̂ + λI)^{-1} g → −(α/λ) g as λ → ∞ (momentum 0); here α = λ."""
    workload = ToyClassifier()
    workload.load()
    damping = 1e9  # the damping is split as √λ per Kronecker factor: error ~ |A| / √λ
    prepared = prepare(get_optimizer("kfac"), {"learning_rate": damping, "momentum": 0.0, "damping": damping})
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=64)
    state = stepper.init(params, prepared.arrays(max_steps=10), batch=batch, key=jax.random.PRNGKey(2))
    new, _, loss = jax.jit(stepper.step)(params, state, batch, key=jax.random.PRNGKey(3))
    value, grads = jax.value_and_grad(workload.loss)(params, batch)
    assert float(loss) == pytest.approx(float(value), rel=1e-5)
    for n, p, g in zip(jax.tree.leaves(new), jax.tree.leaves(params), jax.tree.leaves(grads)):
        np.testing.assert_allclose(n - p, -g, rtol=2e-3, atol=2e-5)


def test_kfac_rejects_quadratic_workloads():
    workload = ToyQuadratic()
    prepared = prepare(get_optimizer("kfac"), {})
    with pytest.raises(InputError, match="kfac needs a network workload .* got loss_kind 'quadratic'"):
        bind(prepared, workload)


def test_kfac_adaptive_mode_trains():
    workload = ToyClassifier()
    workload.load()
    prepared = prepare(get_optimizer("kfac"), {"adaptive": "on", "damping": 1e-2})
    assert prepared.static == (("adaptive", "on"), ("lr_schedule", "constant"))
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=64)
    state = stepper.init(params, prepared.arrays(max_steps=10), batch=batch, key=jax.random.PRNGKey(2))
    assert float(state.inner.damping) == pytest.approx(1e-2)  # the initial damping is the hyperparameter
    step = jax.jit(stepper.step)
    losses = []
    for t in range(15):
        params, state, loss = step(params, state, workload.sample_batch(key=jax.random.PRNGKey(t), batch_size=64),
                                   key=jax.random.PRNGKey(t))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert float(state.inner.damping) != pytest.approx(1e-2)  # adapted


@pytest.mark.parametrize("strides,padding", [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((1, 1), (1, 1))),
                                             ((2, 1), ((0, 2), (1, 0)))])
def test_patch_statistics_equal_kfac_jax(strides, padding):
    from kfac_jax._src import patches_second_moment as psm

    from batchlab.optim.kfac_conv import patch_matrix

    x = jax.random.normal(jax.random.PRNGKey(0), (5, 9, 7, 3))
    second, first = psm.patches_moments(x, kernel_spatial_shape=(3, 3), strides=strides, padding=padding,
                                        data_format="NHWC")
    patches = patch_matrix(x, (3, 3), strides, padding)
    size = 3 * 3 * 3
    np.testing.assert_allclose(patches.T @ patches, np.asarray(second).reshape(size, size), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(patches.sum(0), np.asarray(first).reshape(size), rtol=1e-5, atol=1e-4)


def test_fast_convolution_block_equals_kfac_jax_block_on_a_traced_layer():
    """The block kfac-jax builds for a real convolution (its traced padding, strides, layout)."""
    import kfac_jax

    from batchlab.optim.kfac import _registered_loss
    from batchlab.optim.kfac_conv import FastConv2DBlock, conv_block_ctors
    from tests.toys import ToyConvClassifier

    workload = ToyConvClassifier()
    workload.load()
    optimizer = kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(_registered_loss(workload)), l2_reg=0.0,
        num_burnin_steps=0, layer_tag_to_block_ctor=conv_block_ctors(), multi_device=False)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=32)
    optimizer.init(params, jax.random.PRNGKey(2), batch)
    block = optimizer._estimator.blocks[0]  # noqa: SLF001 (test inspects kfac-jax's blocks)
    assert isinstance(block, FastConv2DBlock)
    images = batch["inputs"].reshape(-1, workload.side, workload.side, 1)
    ours = block.compute_inputs_stats(images)
    theirs = kfac_jax.Conv2DTwoKroneckerFactored.compute_inputs_stats(block, images)
    assert ours.shape == (3 * 3 * 1 + 1,) * 2
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _tiny_text(context_length=8):
    from batchlab.workloads import get_workload

    workload = get_workload("text-transformer", model_dim=16, layers=1, heads=2, context_length=context_length,
                            eval_windows=16)
    workload.load()
    return workload


def test_row_blocks_merge_sequence_positions_into_loss_rows():
    """Layer norm and one-hot embedding over (B, T, ·): every position is one of kfac-jax's B·T rows."""
    import kfac_jax

    from batchlab.optim.kfac import _loss_rows, _registered_loss
    from batchlab.optim.kfac_rows import RowsRepeatedDenseBlock, RowsScaleAndShiftBlock, row_block_ctors

    workload = _tiny_text()
    optimizer = kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(_registered_loss(workload)), l2_reg=0.0, num_burnin_steps=0,
        layer_tag_to_block_ctor=row_block_ctors(), batch_size_extractor=_loss_rows(workload), multi_device=False)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=4)
    optimizer.init(params, jax.random.PRNGKey(2), batch)
    blocks = optimizer._estimator.blocks  # noqa: SLF001 (test inspects kfac-jax's blocks)
    norms = [b for b in blocks if isinstance(b, RowsScaleAndShiftBlock)]
    [embedding] = [b for b in blocks if isinstance(b, RowsRepeatedDenseBlock)]
    assert len(norms) == 3  # two per block, one final

    rows, d = 4 * 8, 16
    x, dy = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 8, d))

    def vjp_data(inputs, outputs, tangents, params):
        zeros = tuple(jnp.zeros_like(p) for p in params)
        return kfac_jax.LayerVjpData(
            primals=kfac_jax.LayerData(inputs=(inputs,), outputs=(outputs,), params=params),
            tangents=kfac_jax.LayerData(inputs=(jnp.zeros_like(inputs),), outputs=(tangents,), params=zeros))

    def fresh_estimate(block, data):  # ema_old = 0: the state holds this batch's statistics
        state = block.init(jax.random.PRNGKey(0), None, None, False)
        return block.update_curvature_matrix_estimate(state, data, 0.0, 1.0, 0.0, rows)

    state = fresh_estimate(norms[0], vjp_data(x, x, dy, (jnp.ones(d), jnp.zeros(d))))
    scale, shift = (f.value for f in state.diagonal_factors)
    np.testing.assert_allclose(scale, jnp.mean((x * dy) ** 2, axis=(0, 1)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shift, jnp.mean(dy**2, axis=(0, 1)), rtol=1e-5, atol=1e-7)

    one_hot = jax.nn.one_hot(batch["inputs"], workload.config.vocabulary_size)
    state = fresh_estimate(embedding, vjp_data(one_hot, x, dy, (params["embedding"]["w"],)))
    inputs_factor, outputs_factor = (f.value for f in state.factors)
    np.testing.assert_allclose(inputs_factor, jnp.diag(jnp.mean(one_hot, axis=(0, 1))), atol=1e-7)
    np.testing.assert_allclose(outputs_factor, jnp.einsum("bti,btj->ij", dy, dy) / rows, rtol=1e-5, atol=1e-6)
    assert float(state.average_repeats.value) == 1.0  # no rescaling: one row per position


def test_kfac_trains_the_text_transformer():
    """Layer norms over (batch, time, features) used to fail kfac-jax's row check; now K-FAC trains.

    Measured (d = 16, 1 block, context 16, B = 8, 15 steps): first-step cosine to −g 0.69, training
    loss 4.88 → mean of the last five 3.35 (plain SGD at rate 0.3: 3.12).
    """
    workload = _tiny_text(context_length=16)
    prepared = prepare(get_optimizer("kfac"), {"learning_rate": 0.05, "momentum": 0.0, "damping": 0.1})
    stepper = bind(prepared, workload)
    params = first = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=8)
    state = stepper.init(params, prepared.arrays(max_steps=100), batch=batch, key=jax.random.PRNGKey(2))
    step = jax.jit(stepper.step)
    losses = []
    for t in range(15):
        if t:
            batch = workload.sample_batch(key=jax.random.PRNGKey(10 + t), batch_size=8)
        params, state, loss = step(params, state, batch, key=jax.random.PRNGKey(t))
        losses.append(float(loss))
        if t == 0:  # the preconditioned first update: a descent direction, not the gradient's
            flat = lambda tree: jnp.concatenate([a.ravel() for a in jax.tree.leaves(tree)])
            update = flat(params) - flat(first)
            gradient = flat(jax.jit(jax.grad(workload.loss))(first, batch))  # compiled: 8 s op by op
            cosine = float(-update @ gradient / jnp.linalg.norm(update) / jnp.linalg.norm(gradient))
            assert 0.3 < cosine < 0.9, cosine
    assert all(np.isfinite(losses)) and all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(params))
    assert losses[0] == pytest.approx(4.88, abs=0.05)  # ≈ ln 73 + init spread
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses


def test_kfac_exact_fisher_factors_and_curvature_ema_match_a_direct_computation():
    """Factor scale (per-example Fisher averaged over the B loss rows) and the EMA of successive batches.

    With ``estimation_mode = "fisher_exact"`` the dense factors are ``A = mean_n [x_n, 1][x_n, 1]ᵀ`` and
    ``G = mean_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n`` (``J_n``: the logits' Jacobian w.r.t. the layer's
    outputs); after a second batch each factor is ``(0.95 · F₁ + F₂) / 1.95``.
    """
    from batchlab.optim.kfac import KfacConfig, kfac_stepper

    workload = ToyClassifier()
    workload.load()
    prepared = prepare(get_optimizer("kfac"), {"learning_rate": 0.01, "momentum": 0.0, "damping": 0.1})
    stepper = kfac_stepper(workload, adaptive=False, schedule="constant",
                           config=KfacConfig(estimation_mode="fisher_exact"))
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batches = [workload.sample_batch(key=jax.random.PRNGKey(k), batch_size=48) for k in (1, 2)]
    state = stepper.init(params, prepared.arrays(max_steps=10), batch=batches[0], key=jax.random.PRNGKey(3))

    def factors(p, batch):
        x = batch["inputs"]
        h = jnp.tanh(x @ p["dense1"]["kernel"] + p["dense1"]["bias"])
        probs = jax.nn.softmax(h @ p["dense2"]["kernel"] + p["dense2"]["bias"])
        fisher = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(probs)  # (B, C, C)
        jac = (1 - h**2)[:, :, None] * p["dense2"]["kernel"][None]  # d logits / d pre-activation 1
        ones = jnp.ones((x.shape[0], 1))
        a1, a2 = jnp.concatenate([x, ones], 1), jnp.concatenate([h, ones], 1)
        return {
            (9, 9): a1.T @ a1 / len(x), (17, 17): a2.T @ a2 / len(x), (4, 4): fisher.mean(0),
            (16, 16): jnp.einsum("nic,ncd,njd->ij", jac, fisher, jac) / len(x),
        }

    step = jax.jit(stepper.step)
    expected, p = None, params
    for t, batch in enumerate(batches):
        direct = factors(p, batch)  # the curvature is estimated at the parameters before the update
        expected = direct if expected is None else {k: (0.95 * expected[k] + direct[k]) / 1.95 for k in direct}
        p, state, _ = step(p, state, batch, key=jax.random.PRNGKey(10 + t))
        got = {f.value.shape: f.value for block in state.inner.estimator_state.blocks_states for f in block.factors}
        assert set(got) == set(expected)
        for shape, value in expected.items():
            np.testing.assert_allclose(got[shape], value, rtol=1e-4, atol=1e-6, err_msg=f"step {t}, {shape}")
