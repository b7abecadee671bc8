"""What if a calibrated NQM were tuned only inside the study's search box?

Issue 15.  The NQM tunes each optimizer's learning rate and momentum freely; a study searches a box
(``[optimizers.X] search.learning_rate``, ``search.momentum`` / ``search.beta1``).  This re-tunes the
NQM of a calibration on a grid, once over wide ranges and once inside the study spec's box (Adam's
``learning_rate`` is its own ``lr = α / (1 − β)``; β over the box of ``momentum`` or ``beta1``), and
prints the expected-risk steps per batch size and the hyperbola-fit B_noise of both.

Usage::

    PYTHONPATH=src python benchmarks/calibration_study_box.py results/calibration/fashion-mnist/measured \
        studies/paper-fashion-mnist.toml 64,256,1024,4096
"""

import json
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
from batchlab.calibrate.pipeline import read_nqm
from batchlab.nqm.optimize import make_dynamics
from batchlab.nqm.search import search_steps
from batchlab.critical import fit_hyperbola
from batchlab.study import load_spec
folder, spec_path = sys.argv[1], sys.argv[2]; sizes = [float(b) for b in sys.argv[3].split(",")]
pred = json.load(open(f"{folder}/prediction.json"))
spec = load_spec(spec_path)
boxes = {o.name: {d.name: (d.low, d.high) for d in o.search} for o in spec.optimizers}
for name, e in pred["optimizers"].items():
    if name not in boxes: continue
    pb, tgt = read_nqm(folder, name)
    box = boxes[name]
    lo, hi = box["learning_rate"]
    bkey = "beta1" if name == "adam" else "momentum"
    out = {}
    for lab in ("free", "box"):
        st = []
        for B in sizes:
            if lab == "free":
                lrs = np.geomspace(1e-6, 1e3, 181); betas = 1 - np.geomspace(0.5, 0.001, 19)
            else:
                lrs = np.geomspace(lo, hi, 61); b0, b1 = box.get(bkey, (0, 0)); betas = 1 - np.geomspace(1 - b0, 1 - b1, 19) if bkey in box else np.zeros(1)
            if e["nqm_kind"] == "sgd":
                s = search_steps(pb, make_dynamics("sgd", learning_rate=lrs), batch_size=B, target=tgt)
            else:
                R, Bt = np.meshgrid(lrs, betas, indexing="ij")
                alpha = R * (1 - Bt) if name == "adam" else R
                s = search_steps(pb, make_dynamics("momentum", learning_rate=alpha, momentum=Bt), batch_size=B, target=tgt)
            st.append(float(np.min(s)))
        f = fit_hyperbola(sizes, st); out[lab] = (st, f.b_noise if f else None)
    print(f"{name:9s} box {box}\n   free {[int(x) for x in out['free'][0]]} B_noise {out['free'][1]:.0f}\n   box  {[int(x) for x in out['box'][0]]} B_noise {out['box'][1]:.0f}", flush=True)
