"""Calibration ensembles: one calibration per seed, combined into one prediction.

A calibration's seed sets its reference runs (which learning rate wins, where the target is first met),
its measurement batches, Lanczos start and probes.  On digits-cnn one seed moves the predicted critical
batch size by up to 2x (``B_noise`` of SGD 56 / 75 / 104 with seeds 0 / 1 / 2, Adam 194 / 261 / 294;
``results/calibration/`` section "Calibration ensembles"): the SGD reference trains at the edge of
stability, and one checkpoint of such a run is a noisy sample of its curvature (top eigenvalue 5.3 /
4.8 / 2.6).  A prediction from one seed is then one draw; ``batchlab calibrate --seeds N`` makes N and
reports their median and their spread.

Layout of ``batchlab calibrate --seeds N --seed S --out DIR`` (or ``batchlab calibrate-combine
MEMBER... --out DIR`` for calibrations already made)::

    DIR/seed-S/ … DIR/seed-(S+N-1)/   complete calibrations (format in :mod:`batchlab.calibrate`), each
                                      with settings.json (member_settings), written when it finished
    DIR/prediction.json               the ensemble's prediction (below)
    DIR/prediction.png                its median curves, each member's as a thin line

``prediction.json`` of an ensemble has what a study reads from one calibration (``workload``,
``checkpoint_step``, ``target``, ``optimizers``; :mod:`batchlab.store.prediction`), so a study report
overlays it and ``[tuning] centre = "calibration"`` centres on it unchanged.  Per optimizer:

- ``steps[i]``: the median over members of their ``steps[i]`` (an unreachable member counts as
  infinitely many steps; ``null`` where the median is unreachable; with an even number of members the
  mean of the middle two);
- ``learning_rates[i]`` / ``momenta[i]``: the members' geometric median (of ``1 − β`` for momenta) at
  that batch size, over those that have one;
- ``critical_batch_size``: the hyperbola fit (:mod:`batchlab.critical`) of the median curve;
- ``members``: ``{"steps": [[…] per member], "b_noise": [per member], "b_noise_range": [min, max],
  "b_noise_median", "learning_rates": [[…] per member]}`` (and ``fitted_exponent`` per member for measured
  ones).  ``b_noise_median``, the median of the members' own critical batch sizes, can differ from the
  median curve's: on digits-cnn's six seeds Adam's is 207 where the median curve's is 275;
- the members' common fields (``nqm_kind``, ``precond``, ``units``, ``batch_sizes``, and where present
  ``preconditioner``, ``bias_correction``).

Top level: ``"source"`` (read by studies), ``"seeds"``, ``checkpoint_step`` (the members' median; each
member's is under ``ensemble``), ``target`` (``metric`` and ``value``, which all members share; their NQM
targets under ``ensemble``), ``noise_scales`` (medians), and ``"ensemble": {"rule", "members": [{"folder",
"seed", "checkpoint_step", "target", "noise_scales", "reference"}]}``.

A rerun of the same command resumes: a member whose ``settings.json`` has the same fingerprint (settings,
workload, options, seed, batchlab's version) is reused, so an interrupted ensemble loses at most the member
it was making; anything else is calibrated again (remove a member folder to force it after changing code).

Members must agree on the workload, the target (metric and value), the optimizers, each optimizer's batch
sizes and the first hit's cadence, and must have distinct seeds; otherwise :class:`InputError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from batchlab.calibrate.figures import COLORS
from batchlab.calibrate.predict import critical_entry
from batchlab.critical import critical_batch_size
from batchlab.errors import InputError
from batchlab.jsonsafe import dumps

__all__ = ["MEMBER_PREFIX", "SETTINGS_FILE", "member_folder", "member_settings", "finished_member", "mark_finished",
           "combine", "read_member", "write_ensemble", "ensemble_figure", "median_steps", "geometric_median"]

MEMBER_PREFIX = "seed-"
RULE = "median over members per batch size"
_COMMON = ("nqm_kind", "precond", "units", "preconditioner", "bias_correction")


SETTINGS_FILE = "settings.json"


def member_folder(out: Path, seed: int) -> Path:
    """Where member ``seed`` of an ensemble in ``out`` is written."""
    return Path(out) / f"{MEMBER_PREFIX}{seed}"


def member_settings(config: Any, workload: str, options: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """What makes a member what it is: the calibration's settings (``CalibrationConfig``), the workload and
    its options, the seed and batchlab's version, with their SHA-256 (``fingerprint``)."""
    import dataclasses
    import hashlib

    from batchlab import __version__

    body = {"workload": workload, "options": dict(sorted(options.items())), "seed": int(seed),
            "config": dataclasses.asdict(config), "batchlab": __version__}
    text = json.dumps(body, sort_keys=True, default=str)
    return {**body, "fingerprint": hashlib.sha256(text.encode()).hexdigest()}


def finished_member(folder: Path, settings: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a finished member made with exactly ``settings`` (its ``settings.json``,
    written last, has the same fingerprint, and its ``prediction.json`` is there): a rerun of ``--seeds``
    reuses it instead of calibrating again."""
    try:
        stored = json.loads((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (isinstance(stored, dict) and stored.get("fingerprint") == settings["fingerprint"]
            and (Path(folder) / "prediction.json").is_file())


def mark_finished(folder: Path, settings: Mapping[str, Any]) -> None:
    """Record that ``folder``'s calibration finished with ``settings`` (after every other file is written)."""
    (Path(folder) / SETTINGS_FILE).write_text(dumps(dict(settings), indent=1) + "\n")


def median_steps(values: Sequence[float | None]) -> float | None:
    """The median of the members' steps at one batch size; ``None`` (unreachable) counts as infinitely
    many steps, and a median that is infinite is ``None``.  An integer when it is one.

    Example:
        >>> median_steps([40, None, 30]), median_steps([40, None]), median_steps([31, 40, 35, 30])
        (40, None, 33)
    """
    if not values:
        raise ValueError("no values")
    x = np.array([math.inf if v is None else float(v) for v in values])
    m = float(np.median(x))
    if not math.isfinite(m):
        return None
    return int(m) if m == int(m) else m


def geometric_median(values: Sequence[float | None], *, one_minus: bool = False) -> float | None:
    """The median of ``log v`` (``one_minus``: of ``log(1 − v)``) over the values given (``None``
    skipped), mapped back; ``None`` if none is given.

    Example:
        >>> round(geometric_median([0.1, None, 0.4]), 12)
        0.2
        >>> round(geometric_median([0.9, 0.99, 0.999], one_minus=True), 12)
        0.99
    """
    x = np.array([float(v) for v in values if v is not None])
    base = 1.0 - x if one_minus else x
    base = base[np.isfinite(base) & (base > 0)]
    if base.size == 0:
        return None
    value = float(np.exp(np.median(np.log(base))))
    return 1.0 - value if one_minus else value


def read_member(folder: Path) -> dict[str, Any]:
    """A member's ``prediction.json``.

    Raises:
        InputError: missing, unreadable or not a ``batchlab calibrate`` output (one line naming it).
    """
    path = Path(folder) / "prediction.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (a `batchlab calibrate --out` folder?)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("optimizers"), dict) or "workload" not in data:
        raise InputError(f"{path}: not a calibration's prediction (no workload and optimizers)")
    if "ensemble" in data:
        raise InputError(f"{path}: is itself an ensemble; combine its members instead")
    if not isinstance(data.get("seed"), int) or isinstance(data.get("seed"), bool):
        raise InputError(f"{path}: has no integer seed")
    return data


def _check_compatible(members: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    first, where = members[0], names[0]
    seeds: dict[int, str] = {}
    for member, name in zip(members, names):
        if member["seed"] in seeds:
            raise InputError(f"{name} and {seeds[member['seed']]} have the same seed {member['seed']}: they are "
                             "the same calibration (give members distinct seeds)")
        seeds[member["seed"]] = name
        if member["workload"] != first["workload"]:
            raise InputError(f"{name} calibrates workload {member['workload']}, {where} {first['workload']}")
        for key in ("metric", "value"):
            if member.get("target", {}).get(key) != first.get("target", {}).get(key):
                raise InputError(f"{name} has target {key} {member.get('target', {}).get(key)!r}, {where} "
                                 f"{first.get('target', {}).get(key)!r}")
        if list(member["optimizers"]) != list(first["optimizers"]):
            raise InputError(f"{name} predicts {', '.join(member['optimizers'])}, {where} "
                             f"{', '.join(first['optimizers'])}")
        for opt, entry in member["optimizers"].items():
            ref = first["optimizers"][opt]
            if entry.get("batch_sizes") != ref.get("batch_sizes"):
                raise InputError(f"{name}: {opt}'s batch sizes {entry.get('batch_sizes')} differ from {where}'s "
                                 f"{ref.get('batch_sizes')}")
            every = (entry.get("first_hit") or {}).get("every"), (ref.get("first_hit") or {}).get("every")
            if every[0] != every[1]:
                raise InputError(f"{name}: {opt}'s first hit is checked every {every[0]} steps, {where}'s every "
                                 f"{every[1]} (give both the same --first-hit-every)")
            for key in _COMMON:
                if entry.get(key) != ref.get(key):
                    raise InputError(f"{name}: {opt}'s {key} is {entry.get(key)!r}, {where}'s {ref.get(key)!r}")


def _combined_entry(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = entries[0]
    sizes = list(first["batch_sizes"])
    steps = [median_steps([e["steps"][i] for e in entries]) for i in range(len(sizes))]
    rates = [geometric_median([e["learning_rates"][i] for e in entries if e.get("learning_rates")])
             for i in range(len(sizes))]
    momenta = [geometric_median([e["momenta"][i] for e in entries if e.get("momenta")], one_minus=True)
               for i in range(len(sizes))]
    fit = critical_batch_size(sizes, [math.nan if s is None else s for s in steps])
    b_noise = [(e.get("critical_batch_size") or {}).get("b_noise") for e in entries]
    finite = [b for b in b_noise if b is not None and math.isfinite(b)]
    out = {key: first[key] for key in _COMMON if key in first}
    out |= {"batch_sizes": sizes, "steps": steps, "learning_rates": rates, "momenta": momenta,
            "critical_batch_size": critical_entry(fit),
            "members": {"steps": [list(e["steps"]) for e in entries], "b_noise": b_noise,
                        "b_noise_range": [min(finite), max(finite)] if finite else None,
                        "b_noise_median": float(np.median(finite)) if finite else None,
                        "learning_rates": [list(e.get("learning_rates") or []) for e in entries]}}
    if "fitted_exponent" in first:
        out["members"]["fitted_exponent"] = [e.get("fitted_exponent") for e in entries]
    return out


def combine(members: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """The ensemble's ``prediction.json`` object from its members' (format in the module docs).

    Args:
        members: the members' ``prediction.json`` objects (one calibration per seed; at least 2).
        names: how errors name each member (default ``member 0``, ``member 1``, …; folders when read).

    Raises:
        InputError: fewer than two members, or members that do not agree (module docs).
    """
    names = list(names or (f"member {i}" for i in range(len(members))))
    if len(members) < 2:
        raise InputError(f"an ensemble needs at least 2 calibrations, got {len(members)}")
    _check_compatible(members, names)
    first = members[0]
    optimizers = {opt: _combined_entry([m["optimizers"][opt] for m in members]) for opt in first["optimizers"]}
    seeds = [int(m["seed"]) for m in members]
    checkpoint = median_steps([m.get("checkpoint_step") for m in members])
    scales = {key: geometric_median([(m.get("noise_scales") or {}).get(key) for m in members])
              for key in ("b_simple", "b_noise")}
    return {
        "source": (f"calibrated NQM of {first['workload']}: median of {len(members)} calibrations "
                   f"(seeds {', '.join(map(str, seeds))})"),
        "workload": first["workload"],
        "checkpoint_step": None if checkpoint is None else int(round(checkpoint)),
        "target": {"metric": first["target"]["metric"], "value": first["target"]["value"]},
        "optimizers": optimizers,
        "noise_scales": scales,
        "curvature": first.get("curvature"),
        "seeds": seeds,
        "ensemble": {"rule": RULE, "members": [
            {"folder": name, "seed": int(m["seed"]), "checkpoint_step": m.get("checkpoint_step"),
             "target": m.get("target"), "noise_scales": m.get("noise_scales"), "reference": {
                 key: (m.get("reference") or {}).get(key) for key in ("optimizer", "batch_size", "hyperparameters",
                                                                     "median_steps")}}
            for name, m in zip(names, members)]},
    }


def write_ensemble(out: Path, folders: Sequence[Path], *, relative: bool = True) -> dict[str, Path]:
    """Combine the calibrations in ``folders`` and write ``out/prediction.json`` and ``out/prediction.png``.

    Members are named by their folder, relative to ``out`` where ``relative`` and possible.

    Returns:
        File role → path.

    Raises:
        InputError: a member that cannot be read, members that do not agree, or ``out`` not writable.
    """
    from batchlab.calibrate.pipeline import check_output_dir  # the same rules as a calibration's folder

    out = Path(out)
    check_output_dir(out)
    members = [read_member(folder) for folder in folders]
    names = []
    for folder in folders:
        folder = Path(folder)
        try:
            names.append(str(folder.resolve().relative_to(out.resolve())) if relative else str(folder))
        except ValueError:
            names.append(str(folder))
    prediction = combine(members, names)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "prediction.json"
        path.write_text(dumps(prediction, indent=1) + "\n")
        figure = ensemble_figure(prediction, out / "prediction.png")
    except OSError as exc:
        raise InputError(f"output folder {out}: cannot write {exc.filename or ''}: {exc.strerror or exc}") from None
    return {"prediction": path, "prediction_figure": figure}


def ensemble_figure(prediction: Mapping[str, Any], path: Path) -> Path:
    """Median predicted steps versus batch size per optimizer (log–log, markers), each member's curve
    as a thin line of the same colour, the median curve's critical batch size marked; written to ``path``."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    cycle = iter(("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"))
    for name, entry in prediction["optimizers"].items():
        color = COLORS.get(name) or next(cycle, "black")
        sizes = np.asarray(entry["batch_sizes"], float)
        for member in entry["members"]["steps"]:
            ax.plot(sizes, [math.nan if s is None else s for s in member], "-", color=color, alpha=0.35, lw=0.8)
        steps = np.array([math.nan if s is None else s for s in entry["steps"]], float)
        b_noise = entry["critical_batch_size"]["b_noise"]
        spread = entry["members"]["b_noise_range"]
        label = f"{name}: B_noise {b_noise:.3g}" if b_noise else name
        if b_noise and spread:
            label += f" (members {spread[0]:.3g}–{spread[1]:.3g})"
        ax.plot(sizes, steps, "o-", color=color, label=label)
        if b_noise and sizes[0] <= b_noise <= sizes[-1]:
            ax.axvline(b_noise, color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size (examples per step)")
    ax.set_ylabel("predicted steps to target")
    ax.set_title(f"{prediction['workload']}: calibrated NQM, median of {len(prediction['seeds'])} seeds "
                 "(thin: each seed)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)
