"""Is a calibrated NQM's gradient noise right, and does the network pay for it as a quadratic does?

Issue 15, "find out why it misses" (SGD on fashion-mnist-mlp, predicted / measured B_noise 0.46).  Three
measurements against one committed calibration folder (its ``nqm_problem.json`` and ``prediction.json``):

1. **The noise floor at the checkpoint.**  The reference run is replayed (the calibration's seed and tuned
   rate) to its checkpoint; from there plain SGD runs ``--floor-steps`` more updates at each batch size of
   ``--floor-sizes``, at each rate of ``--floor-rates`` (default: the reference rate and half of it).  The
   network's floor is the excess of a batch size's mean train-set loss over the second half of those updates
   over the largest batch size's; the NQM's is its expected noise risk after as many updates from a zero
   state (exact: ``½ Σ w h m_t``, ``m_{t+1} = (1 − α h)² m_t + α² c / B``), minus the largest batch size's,
   with the bulk's noise ``c = r h`` as calibrated and with ``r`` from the measured ``tr Σ``
   (``--bulk-noise total``, from ``spectra.json``).
2. **One rate, every batch size.**  Steps to the target of the network (plain SGD from initialisation, the
   median over ``--seeds`` training seeds, each listed) and of the calibrated NQM's expected risk (plus its
   fitted start-up delay) at each rate of ``--rates``, untuned, at each batch size of ``--sizes``.
3. **The network's own large batch plus the NQM's noise.**  In a quadratic the expected risk of SGD is its
   noiseless curve plus a noise term that depends on the curvature, the noise, the rate and the batch size
   only.  So the network's train-set loss curve at the largest batch size (nearly noiseless) plus the NQM's
   noise term at batch size B, minus that at the largest, should give B's steps if the network paid for its
   noise as a quadratic does (the curve is evaluated every ``--curve-every`` steps and interpolated).

Usage (each about 2-6 minutes on 2 cores)::

    PYTHONPATH=src python benchmarks/calibration_noise_coupling.py fashion-mnist-mlp \\
        results/calibration/fashion-mnist/delay/seed-0 --sizes 64,256,1024,4096 --rates 0.1,0.2154,0.3 \\
        --floor-sizes 32,64,128,4096 --horizon 3000
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import jax
import numpy as np

from batchlab.calibrate.operators import chunk_batch
from batchlab.calibrate.reference import ReferenceConfig, measured_loss, run_reference
from batchlab.nqm import Problem
from batchlab.nqm.drift import Drift, drifted_risk
from batchlab.train import run, setup
from batchlab.workloads.registry import get_workload


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def sgd_risk(h: np.ndarray, c: np.ndarray, w: np.ndarray, s0: np.ndarray | None, rate: float, batch: float,
             steps: int) -> np.ndarray:
    """The NQM's exact expected SGD risk after 0 … ``steps`` updates (:func:`batchlab.nqm.drift.drifted_risk`);
    ``s0`` ``None``: from a zero state, the noise's risk alone."""
    problem = Problem(h=h, c=c, s0=np.zeros_like(h) if s0 is None else s0, weights=w)
    with np.errstate(over="ignore", invalid="ignore"):
        return drifted_risk(problem, Drift.none(h.shape[0]), learning_rate=rate, momentum=None, batch_size=batch,
                            steps=steps)


def first_below(curve: np.ndarray, target: float) -> int | None:
    hits = np.flatnonzero(curve <= target)
    return int(hits[0]) if hits.size else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload")
    parser.add_argument("folder", type=Path, help="a calibration folder (one seed: nqm_problem.json, prediction.json)")
    parser.add_argument("--sizes", type=ints, required=True, help="batch sizes of sections 2 and 3 (largest last)")
    parser.add_argument("--rates", type=floats, required=True, help="learning rates of sections 2 and 3")
    parser.add_argument("--floor-sizes", type=ints, required=True, help="batch sizes of section 1 (largest last)")
    parser.add_argument("--floor-steps", type=int, default=300)
    parser.add_argument("--floor-rates", type=floats, default=None, help="rates of section 1")
    parser.add_argument("--horizon", type=int, default=3000, help="step budget of sections 2 and 3")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds of section 2's network runs")
    parser.add_argument("--curve-every", type=int, default=10, help="evaluation cadence of section 3's curve")
    args = parser.parse_args()

    problem = json.loads((args.folder / "nqm_problem.json").read_text())
    prediction = json.loads((args.folder / "prediction.json").read_text())
    h, c, w = (np.array(problem[k], float) for k in ("h", "c", "weights"))
    s0, delay = np.array(problem["s0"], float), int(problem.get("delay") or 0)
    spectra = json.loads((args.folder / "spectra.json").read_text())
    top = int(spectra["top_k"])
    c_total = c.copy()  # the bulk's r from tr Σ: the same top-k, the bulk scaled to the measured trace
    c_total[top:] *= (spectra["gradient_noise"]["trace_sigma"] - c[:top].sum()) / float(w[top:] @ c[top:])
    seed = int(prediction.get("seed", 0))
    reference = prediction["reference"]
    rate0 = float(reference["hyperparameters"]["learning_rate"])
    target = prediction["target"]
    workload = get_workload(args.workload)
    workload.load()
    key_loss, _ = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    chunks = chunk_batch(workload.sample_batch(key=key_loss, batch_size=4096), 256)
    print(f"{args.workload}, calibration {args.folder} (seed {seed}): target {target['metric']} <= {target['value']}, "
          f"NQM target {problem['target']:.4f}, reference SGD lr {rate0:.4g} at B = {reference['batch_size']}, "
          f"fitted delay {delay}")

    # 1. The noise floor at the checkpoint.
    config = ReferenceConfig(optimizer="sgd", hyperparameters={"learning_rate": rate0},
                             batch_size=int(reference["batch_size"]), tune_points=0, seeds=1,
                             target=target["value"], target_metric=target["metric"])
    ref = run_reference(workload, config, seed=seed, loss_chunks=chunks)
    data = workload.train_data()
    print(f"\n1. Noise floor: {args.floor_steps} SGD updates from the checkpoint (step {ref.checkpoint_step}, "
          f"loss {ref.target_loss:.4f}); excess over B = {max(args.floor_sizes)}, mean train-set loss of the last half")
    for rate in args.floor_rates or (rate0 / 2, rate0):
        means = {}
        for batch in args.floor_sizes:
            def update(theta, key, batch=batch, rate=rate):
                grads = jax.grad(workload.loss)(theta, workload.sample_batch_from(data, key=key, batch_size=batch))
                return jax.tree_util.tree_map(lambda t, g: t - rate * g, theta, grads)
            step = jax.jit(update)
            theta, key, losses = ref.checkpoint, jax.random.PRNGKey(1000 + batch), []
            every = max(args.floor_steps // 20, 1)
            for t in range(args.floor_steps):
                key, sub = jax.random.split(key)
                theta = step(theta, sub)
                if t + 1 > args.floor_steps // 2 and (t + 1) % every == 0:
                    losses.append(measured_loss(workload, theta, chunks))
            means[batch] = float(np.mean(losses))
        big = max(args.floor_sizes)
        for batch in args.floor_sizes[:-1]:
            network = means[batch] - means[big]
            nqm, total = (sgd_risk(h, cc, w, None, rate, batch, args.floor_steps)[-1]
                          - sgd_risk(h, cc, w, None, rate, big, args.floor_steps)[-1] for cc in (c, c_total))
            print(f"   lr {rate:.4g}  B {batch:5d}: network {network:.4f} | NQM as calibrated {nqm:.4f} "
                  f"(network / NQM {network / nqm:.2f}) | NQM, bulk r from tr Σ {total:.4f} ({network / total:.2f})",
                  flush=True)

    # 2 and 3.
    big = max(args.sizes)
    print(f"\n2. Steps to the target at one rate (network: plain SGD, median of seeds {seed}-{seed + args.seeds - 1}; "
          f"NQM: expected risk + delay {delay})"
          f"\n3. The network's B = {big} curve plus the NQM's noise term at B (minus B = {big}'s)")
    for rate in args.rates:
        net, runs = [], []
        for batch in args.sizes:
            counts = [run(setup(workload, "sgd", {"learning_rate": rate}, batch, args.horizon, s,
                                target=target["value"], target_metric=target["metric"], eval_every=10)).steps_to_target
                      for s in range(seed, seed + args.seeds)]
            runs.append(counts)
            finite = sorted(math.inf if n is None else n for n in counts)
            middle = finite[(len(finite) - 1) // 2]
            net.append(None if math.isinf(middle) else middle)
        nqm = []
        for batch in args.sizes:
            risk = sgd_risk(h, c, w, s0, rate, batch, args.horizon)
            hit = first_below(risk, problem["target"])
            nqm.append(None if hit is None else hit + delay)
        curve = run(setup(workload, "sgd", {"learning_rate": rate}, big, args.horizon, seed, target=-math.inf,
                          target_metric=target["metric"], eval_every=args.curve_every)).curve
        steps = np.array([p.step for p in curve], float)
        loss = np.array([p.metrics[target["metric"]] for p in curve], float)
        noiseless = np.interp(np.arange(args.horizon + 1), steps, loss)
        tail = sgd_risk(h, c, w, None, rate, big, args.horizon)
        added = [first_below(noiseless + sgd_risk(h, c, w, None, rate, b, args.horizon) - tail, target["value"])
                 for b in args.sizes]
        print(f"   lr {rate:.4g}  B {args.sizes}\n      network (median) {net}   seeds {runs}"
              f"\n      NQM              {nqm}\n      network B={big} + NQM noise {added}", flush=True)


if __name__ == "__main__":
    main()
