"""Property test over the command line: no input, however hostile, gets a traceback.

Every command in :data:`COMMANDS` is invoked in-process (typer's CliRunner) with a cheap valid base
command line whose flags are overridden by drawn values: random valid ones and adversarial ones
(``inf``, ``nan``, huge, negative, empty, garbage, unicode, ``2^1000``, ``1e20``).  Each call must
exit with 0 or 2, print no ``Traceback``, turn our own input errors into exactly one ``error: ...``
line, and print strictly valid JSON (``null``, never ``NaN``/``Infinity``) when ``--json`` succeeds.

Cost is bounded by construction: valid draws stay small (NQM dimensions ≤ 64, a few steps, train
budgets ≤ 5 steps on ``nqm-sampled``), and the two commands whose every valid call is long
(``nqm scaling``'s optimizations, ``nqm figures``) run with their library call replaced by a stub
that checks it only ever receives validated arguments and returns adversarial numbers to render.

To cover another command, add an entry to :data:`COMMANDS` (base argv, ``{flag: strategy}``,
optional stubs): ``{tmp}`` in a drawn value is replaced by a fresh folder holding a file ``a_file``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Callable
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from batchlab.cli import _register, app

_register()
RUNNER = CliRunner()

ADVERSARIAL = (
    "inf", "-inf", "nan", "NaN", "0", "-0", "-1", "1e308", "-1e308", "1e20", "1e400", "2^64", "2^1000",
    "2^99999999999", "18446744073709551616", "99999999999999999999", "", " ", "abc", "1,,2", ",", "ünïcödé",
    "💥", "2^-1", "0x10", "1e-320", "=", "a=b=c", "--json", "1.5",
)


# Numbers that parse (so they reach the commands' own checks) but sit at or beyond every limit.
EDGE_INTS = ("-1", "0", "1", "2^31", "2147483648", "4294967296", "18446744073709551616", "99999999999999999999",
             "1" + "0" * 400)
EDGE_FLOATS = ("inf", "-inf", "nan", "0", "-0.0", "1e308", "-1e308", "1e-320", "1e20", "2e9", "0.999999999999")


def _values(valid: st.SearchStrategy, edges: tuple[str, ...] = ()) -> st.SearchStrategy:
    """A flag's values as a user would type them: adversarial text, edge numbers, or valid values."""
    return st.one_of(st.sampled_from(ADVERSARIAL), st.sampled_from(edges or ADVERSARIAL), valid.map(str),
                     valid.map(str))


def _ints(valid: st.SearchStrategy) -> st.SearchStrategy:
    return _values(valid, EDGE_INTS)


def _floats(valid: st.SearchStrategy) -> st.SearchStrategy:
    return _values(valid, EDGE_FLOATS)


def _lists(valid: st.SearchStrategy, max_size: int = 4) -> st.SearchStrategy:
    items = st.one_of(st.sampled_from(ADVERSARIAL), valid.map(str), valid.map(str), valid.map(str))
    return st.lists(items, min_size=1, max_size=max_size).map(",".join)


SMALL_FLOATS = st.floats(min_value=-2.0, max_value=3.0, allow_nan=False)
UNIT = st.floats(min_value=0.0, max_value=1.0)
FLAG = st.just(None)  # a boolean flag: present or absent
OUT_PATHS = st.sampled_from(["{tmp}/new", "{tmp}/new/deeper", "{tmp}", "{tmp}/a_file", "{tmp}/a_file/sub", "",
                             "{tmp}/ünï cødé", "{tmp}/nul\x00byte", "/proc/self/no/such", "/dev/null"])


@dataclasses.dataclass(frozen=True)
class Command:
    """A command under test: a cheap valid argv, its flags' strategies, and library stubs."""

    base: tuple[str, ...]
    flags: dict[str, st.SearchStrategy]
    stubs: dict[str, Callable] = dataclasses.field(default_factory=dict)


# --- stubs for the long library calls (they check what reaches them) ---------------------------------

class _Result:
    def __init__(self, data):
        self.data = data
        self.learning_rate = data.get("learning_rate")

    def as_dict(self):
        return dict(self.data)


def _check_scaling_inputs(batch_sizes, target, precond):
    assert batch_sizes and all(math.isfinite(b) and 1 <= b <= 2**50 for b in batch_sizes)
    assert math.isfinite(target) and target > 0 and 0 <= precond <= 1


def _scaling_curve_stub(problem, kind, batch_sizes, *, target, precond=0.0, progress=None, **_):
    _check_scaling_inputs(batch_sizes, target, precond)
    assert problem.dim <= 64
    rows = [dict(kind=kind, batch_size=float(B), steps=[None, 10, 0][i % 3], learning_rate=[math.nan, 0.5, math.inf][i % 3],
                 momentum=None, ema=None, lower_bound=[math.inf, 1.0, 1e308][i % 3],
                 effective_learning_rate=math.nan)
            for i, B in enumerate(batch_sizes)]
    if progress:
        progress(len(rows))
    return _Result(dict(optimizer=kind, precond=precond, target=target, rows=rows,
                        critical_batch_size=dict(b_noise=math.nan, overhead=math.inf, overhead_interpolated=-math.inf,
                                                 hyperbola_fit=None, tolerance=0.2)))


def _piecewise_stub(problem, *, batch_size, target, pieces, precond=0.0):
    _check_scaling_inputs([batch_size], target, precond)
    assert 1 <= pieces <= 100
    return _Result(dict(batch_size=float(batch_size), steps=None, learning_rate=math.nan, learning_rates=[math.inf]))


def _figures_stub(out, spec, *, workers=1, progress=None):
    assert Path(out).is_dir() and 1 <= workers <= 256 and 1 <= spec.dim <= 10**7
    return [Path(out) / "fig.png"]


# --- the table -----------------------------------------------------------------------------------------

NQM_PROBLEM = {
    "--dim": _ints(st.integers(1, 64)),
    "--binned": _ints(st.integers(-2, 80)),
}
NQM_OPTIMIZERS = ("sgd", "momentum", "nesterov", "ema", "momentum-ema", "schedule")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "sgd+ema", "momentum+ema")
HP_NAMES = ("learning_rate", "momentum", "beta1", "ema_decay", "lr_schedule", "warmup_fraction", "epsilon", "nope")

COMMANDS: dict[str, Command] = {
    "nqm risk": Command(
        base=("nqm", "risk", "--batch-size", "4", "--steps", "0,10", "--dim", "8"),
        flags={
            "--batch-size": _floats(st.floats(0.5, 2.0**52)),
            "--steps": _lists(st.integers(-1, 10**15)),
            **NQM_PROBLEM,
            "--lr": _floats(SMALL_FLOATS),
            "--momentum": _floats(UNIT),
            "--nesterov": FLAG,
            "--ema": _floats(UNIT),
            "--precond": _floats(SMALL_FLOATS),
            "--json": FLAG,
        },
    ),
    "nqm scaling": Command(
        base=("nqm", "scaling", "--optimizer", "sgd", "--batch-sizes", "4,64", "--dim", "8"),
        flags={
            "--optimizer": st.one_of(st.sampled_from(NQM_OPTIMIZERS), st.sampled_from(ADVERSARIAL)),
            "--batch-sizes": _lists(st.integers(0, 2**51)),
            "--precond": _floats(SMALL_FLOATS),
            "--target": _floats(st.floats(1e-300, 10.0)),
            **NQM_PROBLEM,
            "--pieces": _ints(st.integers(-1, 101)),
            "--json": FLAG,
        },
        stubs={"batchlab.nqm.scaling.scaling_curve": _scaling_curve_stub,
               "batchlab.nqm.schedule_opt.optimize_piecewise": _piecewise_stub},
    ),
    "nqm figures": Command(
        base=("nqm", "figures", "--out", "{tmp}/figures", "--dim", "8", "--quick"),
        flags={"--out": OUT_PATHS, **NQM_PROBLEM, "--quick": FLAG, "--jobs": _ints(st.integers(-1, 300))},
        stubs={"batchlab.plots.nqm_figures.write_nqm_figures": _figures_stub},
    ),
    "train": Command(
        base=("train", "--workload", "nqm-sampled", "--optimizer", "sgd", "--batch-size", "4", "--max-steps", "2",
              "--eval-every", "1", "--option", "dim=4"),
        flags={
            "--workload": st.sampled_from(["nqm-sampled", "nqm-sampled", "digitz", "", "💥"]),
            "--optimizer": st.one_of(st.sampled_from(OPTIMIZERS), st.sampled_from(ADVERSARIAL)),
            "--batch-size": _ints(st.sampled_from([0, 4, 8, 2**20 + 1, 2**40])),
            "--lr": _floats(st.floats(1e-3, 1.0)),
            "--momentum": _floats(UNIT),
            "--ema": _floats(UNIT),
            "--max-steps": _ints(st.integers(-1, 5)),
            "--seed": _ints(st.sampled_from([-1, 0, 7, 2**32 - 1, 2**32, 2**64])),
            "--target": _floats(st.floats(-1.0, 2.0)),
            "--eval-every": _ints(st.integers(-1, 3)),
            "--hp": st.tuples(st.sampled_from(HP_NAMES), _floats(st.floats(0.0, 1.0))).map("=".join),
            "--option": st.one_of(st.sampled_from(["dim=4", "dim=0", "dim=1e400", "exponent=nan", "nope=1", "dim",
                                                   "=4", "exponent=1.5"])),
            "--ema-decays": _lists(UNIT, max_size=2),
            "--json": FLAG,
        },
    ),
    "list": Command(base=("list",), flags={"--json": FLAG}),
}


# --- study and calibrate: a finished study (made once, below) and stubs for the expensive work ----------

def _refuse(*_, **__):
    """Stands for training or measuring: reaching it means every check passed (a valid call)."""
    from batchlab.errors import InputError

    raise InputError("stub: the fuzz test does not train")


STUDY = Path(tempfile.mkdtemp(prefix="batchlab-fuzz-study-"))  # filled by the module fixture below
STUDY_FOLDERS = st.sampled_from([str(STUDY), str(STUDY), "{tmp}", "{tmp}/a_file", "{tmp}/missing", "", "/dev/null",
                                 "{tmp}/a_file/sub", "ünï"])
SPECS = st.sampled_from([str(STUDY / "spec.toml"), "quick", "no-such-preset", "{tmp}/a_file", "{tmp}", "", "💥"])
RESAMPLES = _ints(st.integers(0, 200))
COMMANDS.update({
    "study run": Command(
        base=("study", "run", str(STUDY / "spec.toml"), "--out", str(STUDY)),
        flags={"--out": st.one_of(OUT_PATHS, st.just(str(STUDY))), "--executor": st.sampled_from(
                   ["local", "dask", "threads", "", "💥"]),
               "--scheduler": st.sampled_from(["notanaddress", "tcp://127.0.0.1:notaport", "tcp://127.0.0.1:0", "",
                                               "💥", "tcp://[::1", "inproc://x"]),
               "--workers": _ints(st.sampled_from([-1, 0])), "--prune": FLAG, "--no-prune": FLAG},
        # another spec or folder would train: every check runs, then each trial fails (recorded, exit 0)
        stubs={"batchlab.train.train": _refuse}),
    "study status": Command(base=("study", "status", str(STUDY)), flags={}),
    "study report": Command(base=("study", "report", str(STUDY), "--resamples", "20"),
                            flags={"--resamples": RESAMPLES}),
    "study compare": Command(base=("study", "compare", str(STUDY), "--resamples", "20"),
                             flags={"--resamples": RESAMPLES, "--json": FLAG}),
    "study export": Command(base=("study", "export", str(STUDY), "--out", "{tmp}/export"),
                            flags={"--out": OUT_PATHS, "--format": st.sampled_from(
                                ["csv", "parquet", "csv,parquet", "", "xlsx", ",", "csv,,csv"])}),
    "calibrate": Command(
        base=("calibrate", "--workload", "nqm-sampled", "--out", "{tmp}/calibration", "--option", "dim=8",
              "--top-k", "2", "--batch-sizes", "4,64", "--preconditioner", "proxy"),
        flags={"--workload": st.sampled_from(["nqm-sampled", "digits-cnn", "nope", ""]), "--out": OUT_PATHS,
               "--at-step": _ints(st.integers(-1, 100)), "--top-k": _ints(st.integers(-1, 10)),
               "--seed": _ints(st.integers(-1, 5)), "--batch-sizes": _lists(st.floats(0.5, 2.0**40)),
               "--optimizers": st.sampled_from(["sgd", "sgd,momentum,adam,kfac", "nope", "", ","]),
               "--curvature": st.sampled_from(["ggn", "hessian", "nope"]),
               "--reference-optimizer": st.sampled_from(["sgd", "adam", "nope"]),
               "--reference-batch-size": _ints(st.integers(0, 64)),
               "--reference-hp": st.sampled_from(["learning_rate=0.1", "learning_rate=-1", "nope=1", "x"]),
               "--reference-steps": _ints(st.integers(-1, 50)), "--reference-tune": _ints(st.integers(-1, 20)),
               "--reference-seeds": _ints(st.integers(-1, 5)), "--target-loss": _floats(st.floats(0.0, 5.0)),
               "--initial": st.sampled_from(["fit", "isotropic", "equal-risk", "nope"]),
               "--bulk-noise": st.sampled_from(["curvature-weighted", "nope"]),
               "--loss-floor": _floats(st.floats(-1.0, 1.0)), "--slq-probes": _ints(st.integers(-1, 8)),
               "--slq-steps": _ints(st.integers(-1, 80)), "--curvature-examples": _ints(st.integers(-1, 4096)),
               "--noise-examples": _ints(st.integers(-1, 4096)), "--chunk-size": _ints(st.integers(-1, 512)),
               "--option": st.sampled_from(["dim=8", "dim=0", "nope=1", "dim"]), "--json": FLAG,
               "--preconditioner": st.sampled_from(["measured", "proxy", "nope", ""]),
               "--adam-hp": st.sampled_from(["epsilon=0.001", "epsilon=-1", "nope=1", "x"]),
               "--kfac-hp": st.sampled_from(["damping=0.1", "damping=0", "x"])},
        stubs={"batchlab.calibrate.pipeline.run_reference": _refuse, "batchlab.calibrate.pipeline.measure": _refuse}),
})
COMMANDS["study run"].flags["SPEC"] = SPECS
for _name in ("study status", "study report", "study compare", "study export"):
    COMMANDS[_name].flags["FOLDER"] = STUDY_FOLDERS

MAX_FLAGS = 4  # flags overridden per call: more would almost always include a rejected one
EXAMPLES = {"nqm risk": 60, "nqm scaling": 60, "nqm figures": 40, "train": 80, "list": 4, "study run": 30,
            "study status": 10, "study report": 8, "study compare": 15, "study export": 20, "calibrate": 60}


@pytest.fixture(scope="module", autouse=True)
def finished_study():
    """A tiny replicated study on nqm-sampled, run once: the folder the study commands read."""
    from batchlab.study import load_spec, run_study

    spec = STUDY / "spec.toml"
    spec.write_text('''name = "fuzz"
workload = "nqm-sampled"
workload_options = { dim = 8 }
batch_sizes = [16, 64, 256]
eval_every = 10
[tuning]
explore = 3
rounds = 1
candidates = 1
seeds = 3
[budget]
steps = 200
[optimizers.sgd]
search.learning_rate = [0.05, 3.0]
[optimizers.momentum]
search.learning_rate = [0.01, 1.0]
''')
    run_study(load_spec(spec), STUDY)
    yield STUDY


def _argv(command: Command, chosen: dict, tmp: str) -> list[str]:
    argv = list(command.base)
    chosen = dict(chosen)
    for name in [k for k in chosen if k.isupper()]:  # SPEC, FOLDER: the positional third word
        argv[2] = chosen.pop(name)
    for flag, value in chosen.items():
        if flag in argv and value is not None:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag] if value is None else [flag, value]
    return [arg.replace("{tmp}", tmp) for arg in argv]


def _strict_json(text: str):
    def reject(token):
        raise ValueError(f"invalid JSON token {token}")
    return json.loads(text, parse_constant=reject)


def check_command_line(command: Command, chosen: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        (Path(tmp) / "a_file").write_text("not a folder")
        for target, stub in command.stubs.items():
            stack.enter_context(mock.patch(target, stub))
        argv = _argv(command, chosen, tmp)
        result = RUNNER.invoke(app, argv)
    event(f"exit {result.exit_code}")
    shown = f"argv={argv!r}\nstdout={result.stdout[-2000:]}\nstderr={result.stderr[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}\n{shown}"
    assert result.exit_code in (0, 2), shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if ours:  # our InputError path: exactly one line, nothing else on stderr
        assert result.exit_code == 2 and result.stderr.strip() == ours[0], shown
    if result.exit_code == 0 and "--json" in argv:
        _strict_json(result.stdout)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_traceback_from_any_command_line(name):
    command = COMMANDS[name]
    flags = st.dictionaries(st.sampled_from(sorted(command.flags)), st.none(), max_size=MAX_FLAGS)

    @st.composite
    def chosen(draw):
        return {flag: draw(command.flags[flag]) for flag in draw(flags)}

    @settings(max_examples=EXAMPLES[name], deadline=None, suppress_health_check=list(HealthCheck))
    @given(chosen())
    def run(values):
        check_command_line(command, values)

    run()
