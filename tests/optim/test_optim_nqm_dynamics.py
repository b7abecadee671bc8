"""One optax update of sgd / momentum / nesterov on a quadratic equals the NQM dynamics matrices.

Per direction with curvature ``h``, ``x = αh`` and a gradient ``g = hθ + ε``:

* SGD on θ: ``θ' = (1 − x) θ − α ε``;
* heavy ball on (θ, v): ``M = [[1 − x, β], [−x, β]]``, noise ``−α ε (1, 1)``;
* Nesterov on (φ, v), φ the optax parameters: ``M = [[1 − (1+β)x, β²], [−x, β]]``,
  noise ``−α ε (1 + β, 1)``.

The expected matrices are written out here from those formulas (independent of optax and of
batchlab.nqm), then also compared with ``batchlab.nqm.build_system``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from batchlab.optim import adam, get_optimizer, learning_rate_factor, momentum, nesterov, prepare, sgd

H = np.array([1.0, 0.3, 0.01, 2.5])
ALPHA, BETA = 0.4, 0.7
RNG = np.random.default_rng(0)
THETA, VELOCITY, NOISE = RNG.normal(size=4), RNG.normal(size=4), RNG.normal(size=4)


def _hyper(name: str, **values) -> dict:
    return {k: v for k, v in prepare(get_optimizer(name), values).arrays(max_steps=100).items()}


def _update(module, name, params, inner_state=None, **values):
    hyper = _hyper(name, learning_rate=ALPHA, **values)
    tx = module.transform(hyper)
    state = tx.init(jnp.asarray(params, jnp.float32)) if inner_state is None else inner_state
    grads = jnp.asarray(H * params + NOISE, jnp.float32)
    updates, state = tx.update(grads, state, jnp.asarray(params, jnp.float32))
    return np.asarray(params + np.asarray(updates, np.float64)), state


def test_sgd_update_matches_nqm():
    new, _ = _update(sgd, "sgd", THETA)
    x = ALPHA * H
    np.testing.assert_allclose(new, (1 - x) * THETA - ALPHA * NOISE, rtol=1e-5, atol=1e-6)


def _with_velocity(params, velocity):
    # chain(scale, trace): the trace state holds the velocity v (already scaled by −α)
    return (optax.ScaleState(), optax.TraceState(trace=jnp.asarray(velocity, jnp.float32)))


@pytest.mark.parametrize("kind", ["momentum", "nesterov"])
def test_momentum_and_nesterov_update_match_nqm_matrices(kind):
    module = momentum if kind == "momentum" else nesterov
    new, state = _update(module, kind, THETA, _with_velocity(THETA, VELOCITY), momentum=BETA)
    new_velocity = np.asarray(state[1].trace, np.float64)
    for i, h in enumerate(H):
        x = ALPHA * h
        if kind == "momentum":
            matrix, noise = np.array([[1 - x, BETA], [-x, BETA]]), np.array([1.0, 1.0])
        else:
            matrix, noise = np.array([[1 - (1 + BETA) * x, BETA**2], [-x, BETA]]), np.array([1 + BETA, 1.0])
        expected = matrix @ np.array([THETA[i], VELOCITY[i]]) - ALPHA * NOISE[i] * noise
        np.testing.assert_allclose([new[i], new_velocity[i]], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["momentum", "nesterov"])
def test_matrices_agree_with_nqm_engine(kind):
    from batchlab import nqm

    problem = nqm.from_arrays(h=H, c=H, s0=np.ones(4))
    dyn = (nqm.heavy_ball if kind == "momentum" else nqm.nesterov)(ALPHA, BETA)
    system = nqm.build_system(problem, dyn, 1)
    matrices = np.eye(2) - system.matrices()[0]  # the engine stores E = I − M
    for i, h in enumerate(H):
        x = ALPHA * h
        if kind == "momentum":
            expected = np.array([[1 - x, BETA], [-x, BETA]])
        else:
            expected = np.array([[1 - (1 + BETA) * x, BETA**2], [-x, BETA]])
        np.testing.assert_allclose(matrices.reshape(-1, 2, 2)[i], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nesterov_form", [False, True])
def test_constant_rate_equals_textbook_trace_then_scale(nesterov_form):
    """chain(scale(−α), trace(β)) == chain(trace(β), scale(−α)) for a constant rate."""
    module, name = (nesterov, "nesterov") if nesterov_form else (momentum, "momentum")
    tx = module.transform(_hyper(name, learning_rate=ALPHA, momentum=BETA))
    textbook = optax.chain(optax.trace(decay=BETA, nesterov=nesterov_form), optax.scale(-ALPHA))
    params = jnp.asarray(THETA, jnp.float32)
    ours, theirs = tx.init(params), textbook.init(params)
    for k in range(5):
        grads = jnp.asarray(H * np.asarray(params) + RNG.normal(size=4), jnp.float32)
        u1, ours = tx.update(grads, ours, params)
        u2, theirs = textbook.update(grads, theirs, params)
        np.testing.assert_allclose(u1, u2, rtol=1e-5, atol=1e-6)
        params = params + u1


def test_scheduled_momentum_is_velocity_form():
    """With a schedule α_t, v' = βv − α_t g (the NQM engine's segment-wise recursion)."""
    spec = get_optimizer("momentum")
    prepared = prepare(spec, {"learning_rate": ALPHA, "momentum": BETA, "lr_schedule": "linear_decay",
                              "end_factor": 0.1})
    hyper = prepared.arrays(max_steps=4)
    from batchlab.optim.gradient import gradient_stepper

    class Quadratic:
        loss_kind = "quadratic"

        @staticmethod
        def loss(params, batch):
            return 0.5 * jnp.sum(jnp.asarray(H, jnp.float32) * params**2) + params @ batch

    stepper = gradient_stepper(Quadratic(), momentum.transform, schedule="linear_decay")
    params = jnp.asarray(THETA, jnp.float32)
    state = stepper.init(params, hyper)
    theta, v = THETA.copy(), np.zeros(4)
    for t in range(4):
        noise = RNG.normal(size=4)
        params, state, _ = stepper.step(params, state, jnp.asarray(noise, jnp.float32))
        rate = ALPHA * (1 - 0.9 * t / 4)  # linear from α to 0.1 α over the 4-step budget
        assert float(learning_rate_factor(t, hyper, schedule="linear_decay")) == pytest.approx(rate / ALPHA)
        v = BETA * v - rate * (H * theta + noise)
        theta = theta + v
        np.testing.assert_allclose(np.asarray(params), theta, rtol=1e-5, atol=1e-6)


def test_adam_matches_textbook_formula():
    b1, b2, eps = 0.8, 0.95, 1e-3
    tx = adam.transform(_hyper("adam", learning_rate=ALPHA, beta1=b1, beta2=b2, epsilon=eps))
    params = jnp.asarray(THETA, jnp.float32)
    state = tx.init(params)
    m = s = np.zeros(4)
    theta = THETA.copy()
    for k in range(1, 4):
        g = H * theta + RNG.normal(size=4)
        u, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + u
        m, s = b1 * m + (1 - b1) * g, b2 * s + (1 - b2) * g**2
        theta = theta - ALPHA * (m / (1 - b1**k)) / (np.sqrt(s / (1 - b2**k)) + eps)
        np.testing.assert_allclose(np.asarray(params), theta, rtol=1e-4, atol=1e-5)
