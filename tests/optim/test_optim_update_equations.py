"""AdamW, Lion, LAMB, LARS, Muon and schedule-free AdamW against NumPy versions of their equations.

Each optimizer runs a few steps through the registry (``prepare`` → ``bind`` → ``step``) on a tiny
parameter tree whose loss is linear, ``L(θ) = Σ ⟨G_t, θ⟩``, so the gradient of step ``t`` is the
batch ``G_t`` itself; the NumPy reference (float64) applies the update equation of the module's
docstring to the same gradients.  Non-default hyperparameters catch swapped arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from batchlab.optim import bind, get_optimizer, prepare

SHAPES = {
    "conv": {"w": (3, 3, 2, 4), "b": (4,)},  # HWIO kernel
    "dense": {"w": (5, 3), "b": (3,)},
}
STEPS = 3


class LinearLoss:
    """``loss(θ, G) = Σ_leaves ⟨G, θ⟩``: the gradient is the batch."""

    loss_kind = "quadratic"

    def loss(self, params, batch):
        return sum(jnp.vdot(g, p) for g, p in zip(jax.tree.leaves(batch), jax.tree.leaves(params)))

    def apply(self, params, inputs):  # pragma: no cover - not used by the optimizers
        raise NotImplementedError


def _tree(rng, *, zero_bias=False):
    tree = {layer: {k: rng.normal(size=s).astype(np.float32) for k, s in kinds.items()}
            for layer, kinds in SHAPES.items()}
    if zero_bias:  # a zero-initialised bias: trust ratios fall back to 1
        tree["dense"]["b"] = np.zeros(SHAPES["dense"]["b"], np.float32)
    return tree


def _run(name, values, *, zero_bias=False, max_steps=100):
    """Parameters after each step, the gradients used, the initial parameters and the final state."""
    rng = np.random.default_rng(0)
    params0 = _tree(rng, zero_bias=zero_bias)
    grads = [_tree(rng) for _ in range(STEPS)]
    prepared = prepare(get_optimizer(name), values)
    stepper = bind(prepared, LinearLoss())
    state = stepper.init(jax.tree.map(jnp.asarray, params0), prepared.arrays(max_steps=max_steps))
    step = jax.jit(stepper.step)
    params, history = jax.tree.map(jnp.asarray, params0), []
    for g in grads:
        params, state, _ = step(params, state, jax.tree.map(jnp.asarray, g))
        history.append(jax.tree.map(np.asarray, params))
    return params0, grads, history, state, stepper


def _leaves(tree):
    return [np.asarray(a, np.float64) for a in jax.tree.leaves(tree)]


def _check(history, expected, **tol):
    for got_tree, want_tree in zip(history, expected):
        for got, want in zip(_leaves(got_tree), want_tree):
            np.testing.assert_allclose(got, want, **(dict(rtol=2e-5, atol=2e-6) | tol))


def _is_weight(p):
    return p.ndim >= 2


def _norm(a):
    return float(np.sqrt(np.sum(a * a)))


def test_adamw_is_adam_plus_decoupled_decay_on_weight_tensors():
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-3, 0.5
    params0, grads, history, _, _ = _run(
        "adamw", dict(learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd))
    theta = _leaves(params0)
    m = [np.zeros_like(p) for p in theta]
    s = [np.zeros_like(p) for p in theta]
    expected = []
    for k, g in enumerate(grads, start=1):
        for i, gi in enumerate(_leaves(g)):
            m[i] = b1 * m[i] + (1 - b1) * gi
            s[i] = b2 * s[i] + (1 - b2) * gi**2
            direction = (m[i] / (1 - b1**k)) / (np.sqrt(s[i] / (1 - b2**k)) + eps)
            decay = wd * theta[i] if _is_weight(theta[i]) else 0.0  # biases are not decayed
            theta[i] = theta[i] - lr * (direction + decay)
        expected.append([t.copy() for t in theta])
    _check(history, expected)


def test_lion_moves_every_coordinate_by_the_sign_of_the_interpolated_momentum():
    lr, b1, b2, wd = 0.01, 0.7, 0.95, 0.5
    params0, grads, history, _, _ = _run("lion", dict(learning_rate=lr, beta1=b1, beta2=b2, weight_decay=wd))
    theta = _leaves(params0)
    m = [np.zeros_like(p) for p in theta]
    expected = []
    for g in grads:
        for i, gi in enumerate(_leaves(g)):
            direction = np.sign(b1 * m[i] + (1 - b1) * gi)
            m[i] = b2 * m[i] + (1 - b2) * gi
            decay = wd * theta[i] if _is_weight(theta[i]) else 0.0
            theta[i] = theta[i] - lr * (direction + decay)
        expected.append([t.copy() for t in theta])
    _check(history, expected)


def _trust(theta, r, coefficient=1.0):
    pn, rn = _norm(theta), _norm(r)
    return 1.0 if pn == 0 or rn == 0 else coefficient * pn / rn


def test_lamb_rescales_adam_plus_decay_by_the_layer_trust_ratio():
    lr, b1, b2, eps, wd = 0.05, 0.8, 0.95, 1e-4, 0.3
    params0, grads, history, _, _ = _run(
        "lamb", dict(learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd), zero_bias=True)
    theta = _leaves(params0)
    m = [np.zeros_like(p) for p in theta]
    s = [np.zeros_like(p) for p in theta]
    expected = []
    for k, g in enumerate(grads, start=1):
        for i, gi in enumerate(_leaves(g)):
            m[i] = b1 * m[i] + (1 - b1) * gi
            s[i] = b2 * s[i] + (1 - b2) * gi**2
            r = (m[i] / (1 - b1**k)) / (np.sqrt(s[i] / (1 - b2**k)) + eps)
            r = r + (wd * theta[i] if _is_weight(theta[i]) else 0.0)
            theta[i] = theta[i] - lr * _trust(theta[i], r) * r
        expected.append([t.copy() for t in theta])
    _check(history, expected)


def test_lars_is_velocity_momentum_on_the_trust_scaled_decayed_gradient():
    lr, beta, wd, eta = 2.0, 0.8, 0.1, 0.01
    params0, grads, history, _, _ = _run(
        "lars", dict(learning_rate=lr, momentum=beta, weight_decay=wd, trust_coefficient=eta), zero_bias=True)
    theta = _leaves(params0)
    v = [np.zeros_like(p) for p in theta]
    expected = []
    for g in grads:
        for i, gi in enumerate(_leaves(g)):
            r = gi + (wd * theta[i] if _is_weight(theta[i]) else 0.0)
            v[i] = beta * v[i] - lr * _trust(theta[i], r, eta) * r
            theta[i] = theta[i] + v[i]
        expected.append([t.copy() for t in theta])
    _check(history, expected)


def _newton_schulz(m, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-8):
    """optax's quintic iteration on a (fan_in, fan_out) matrix, in NumPy."""
    a, b, c = coefficients
    x = m.T if m.shape[0] > m.shape[1] else m
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if m.shape[0] > m.shape[1] else x


def test_muon_orthogonalises_dense_and_conv_kernels_and_adam_updates_biases():
    lr, beta, ratio, eps = 0.02, 0.9, 0.5, 1e-8
    params0, grads, history, _, _ = _run(
        "muon", dict(learning_rate=lr, momentum=beta, adam_learning_rate_ratio=ratio))
    theta = _leaves(params0)
    m = [np.zeros_like(p) for p in theta]
    s = [np.zeros_like(p) for p in theta]
    expected, orthogonal = [], []
    for k, g in enumerate(grads, start=1):
        for i, gi in enumerate(_leaves(g)):
            m[i] = beta * m[i] + (1 - beta) * gi if _is_weight(theta[i]) else 0.9 * m[i] + 0.1 * gi
            if _is_weight(theta[i]):  # Muon on the (fan_in, fan_out) view: HWIO → (H·W·I, O)
                nesterov = beta * m[i] / (1 - beta ** (k + 1)) + (1 - beta) * gi / (1 - beta**k)
                matrix = nesterov.reshape(-1, theta[i].shape[-1])
                fan_in, fan_out = matrix.shape
                update = _newton_schulz(matrix) * np.sqrt(max(1.0, fan_out / fan_in))
                orthogonal.append(np.linalg.svd(update, compute_uv=False))
                theta[i] = theta[i] - lr * update.reshape(theta[i].shape)
            else:  # the fallback: optax's adamw with Nesterov, β₁ = 0.9, β₂ = 0.999, no decay
                s[i] = 0.999 * s[i] + 0.001 * gi**2
                nesterov = 0.9 * m[i] / (1 - 0.9 ** (k + 1)) + 0.1 * gi / (1 - 0.9**k)
                theta[i] = theta[i] - lr * ratio * nesterov / (np.sqrt(s[i] / (1 - 0.999**k)) + eps)
        expected.append([t.copy() for t in theta])
    _check(history, expected, rtol=2e-4, atol=2e-5)
    # the conv kernel's update is (nearly) orthogonal, not an Adam step: singular values ≈ 1 (±0.5)
    for values in orthogonal:
        assert 0.3 < values.min() and values.max() < 1.5, values


def _schedule_free_reference(params0, grads, *, lr, b1, b2, eps, wd, rates):
    """The y/z/x recursions of the schedule-free module docstring, in NumPy."""
    x = _leaves(params0)
    z = [p.copy() for p in x]
    s = [np.zeros_like(p) for p in x]
    max_rate, weight_sum, xs, ys = 0.0, 0.0, [], []
    for k, (g, rate) in enumerate(zip(grads, rates), start=1):
        y = [b1 * xi + (1 - b1) * zi for xi, zi in zip(x, z)]
        ys.append(y)
        for i, gi in enumerate(_leaves(g)):
            s[i] = b2 * s[i] + (1 - b2) * gi**2
            decay = wd * y[i] if _is_weight(y[i]) else 0.0
            z[i] = z[i] - rate * (gi / (np.sqrt(s[i] / (1 - b2**k)) + eps) + decay)
        max_rate = max(max_rate, rate)
        weight_sum += max_rate**2
        c = max_rate**2 / weight_sum
        x = [(1 - c) * xi + c * zi for xi, zi in zip(x, z)]
        xs.append([xi.copy() for xi in x])
    return xs, ys, z


@pytest.mark.parametrize("warmup", [0.0, 0.5])
def test_schedule_free_recursions_and_evaluation_at_x(warmup):
    lr, b1, b2, eps, wd = 0.05, 0.8, 0.95, 1e-6, 0.2
    values = dict(learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd, warmup_fraction=warmup)
    params0, grads, history, state, stepper = _run("schedule-free-adamw", values, max_steps=4)
    warm = int(warmup * 4)
    rates = [lr * (min(1.0, (t + 1) / warm) if warm else 1.0) for t in range(STEPS)]
    xs, _, z = _schedule_free_reference(params0, grads, lr=lr, b1=b1, b2=b2, eps=eps, wd=wd, rates=rates)
    _check(history, xs)  # the carried parameters are x …
    for got, want in zip(_leaves(state.inner.z), z):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    evaluated = stepper.evaluation_params(history[-1], state)  # … and evaluation uses them
    for got, want in zip(_leaves(evaluated), xs[-1]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_schedule_free_takes_gradients_at_y_not_x():
    lr, b1 = 0.05, 0.8
    params0 = _tree(np.random.default_rng(0))

    class Quadratic(LinearLoss):  # ∇ ½‖θ‖² = θ: the reported loss reveals where it was taken
        def loss(self, params, batch):
            return 0.5 * sum(jnp.sum(p * p) for p in jax.tree.leaves(params))

    prepared = prepare(get_optimizer("schedule-free-adamw"), dict(learning_rate=lr, beta1=b1))
    stepper = bind(prepared, Quadratic())
    x = jax.tree.map(jnp.asarray, params0)
    st = stepper.init(x, prepared.arrays(max_steps=10))
    for _ in range(3):
        y = jax.tree.map(lambda xi, zi: b1 * xi + (1 - b1) * zi, x, st.inner.z)
        x, st, loss = stepper.step(x, st, None)
        want = 0.5 * sum(float(jnp.sum(p * p)) for p in jax.tree.leaves(y))
        assert float(loss) == pytest.approx(want, rel=1e-5)
    y = jax.tree.map(lambda xi, zi: b1 * xi + (1 - b1) * zi, x, st.inner.z)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(x), jax.tree.leaves(y))) > 1e-3  # x and y really differ


def test_schedule_free_matches_optax_and_its_eval_params():
    """optax carries y and evaluates schedule_free_eval_params(state, y); batchlab carries that x."""
    lr, b1, b2, eps, wd = 0.05, 0.8, 0.95, 1e-6, 0.2
    params0, grads, history, _, _ = _run(
        "schedule-free-adamw", dict(learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd))
    reference = optax.contrib.schedule_free(
        optax.chain(optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
                    optax.add_decayed_weights(wd, mask=lambda p: jax.tree.map(_is_weight, p)),
                    optax.scale_by_learning_rate(lr)),
        learning_rate=lr, b1=b1)
    y = jax.tree.map(jnp.asarray, params0)
    state = reference.init(y)
    for g, ours in zip(grads, history):
        updates, state = reference.update(jax.tree.map(jnp.asarray, g), state, y)
        y = optax.apply_updates(y, updates)
        x = optax.contrib.schedule_free_eval_params(state, y)
        for got, want in zip(_leaves(ours), _leaves(x)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_schedule_free_with_ema_averages_x_and_allows_beta1_zero():
    decay = 0.5
    params0, grads, history, state, stepper = _run(
        "schedule-free-adamw+ema", dict(learning_rate=0.05, beta1=0.0, ema_decay=decay))
    average = _leaves(params0)
    for x in history:
        assert all(np.isfinite(a).all() for a in _leaves(x))
        average = [decay * a + (1 - decay) * xi for a, xi in zip(average, _leaves(x))]
    for got, want in zip(_leaves(stepper.evaluation_params(history[-1], state)), average):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
