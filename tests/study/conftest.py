"""Shared fixtures of the study tests: specs derived from the quick preset, synthetic stores."""

from __future__ import annotations

import copy
import pathlib
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
QUICK = REPO / "studies" / "quick.toml"


def quick_data() -> dict:
    """The quick preset as a dict."""
    return tomllib.loads(QUICK.read_text())


def tiny_data(**overrides) -> dict:
    """The quick preset cut down for tests: 2 optimizers (one with EMA tracks), 2 batch sizes,
    2 explore trials (no refinement or replication), 100-step budget, no pruning."""
    data = copy.deepcopy(quick_data())
    data.pop("tuning", None)  # plain exploration: the protocol's phases are tested on nqm-sampled
    data.pop("target_metric", None)  # the workload's own target (error): test_target_metric tests the others
    data.pop("target", None)
    data.update(name="tiny", batch_sizes=[32, 128], trials=2, prune=False, budget={"steps": 100})
    data["optimizers"] = {"sgd": data["optimizers"]["sgd"],
                          "momentum+ema": dict(data["optimizers"]["momentum"], ema_decays=[0.9, 0.99])}
    data.update(overrides)
    return data


def nqm_data(**overrides) -> dict:
    """A study on ``nqm-sampled`` (the NQM itself, d = 10: each cell compiles in seconds and trains in
    milliseconds): SGD at B = 16 and 64, 8 trials each, 400-step budget, evaluation every 10 steps;
    several of its trials reach the target only after a faster earlier one (so pruning prunes)."""
    data = dict(name="nqm", workload="nqm-sampled", workload_options={"dim": 10}, batch_sizes=[16, 64], trials=8,
                seed=0, eval_every=10, prune=False, budget={"steps": 400},
                optimizers={"sgd": {"search": {"learning_rate": [0.05, 3.0]}}})
    data.update(overrides)
    return data


def to_toml(data: dict) -> str:
    """A minimal TOML writer for spec dicts (scalars, lists, nested tables)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if not isinstance(table, dict):
            continue
        if key == "optimizers":
            for name, body in table.items():
                lines.append(f'[optimizers."{name}"]')
                lines += [f'"{k}" = {value(v)}' for k, v in body.items()]
        else:
            lines.append(f"[{key}]")
            lines += [f'"{k}" = {value(v)}' for k, v in table.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory) -> pathlib.Path:
    """A session-wide folder for JAX's persistent compilation cache (never the user's)."""
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(jax_cache):
    # module-scoped and autouse, so it is set before the modules' own module-scoped fixtures (which
    # run studies and start Dask workers) and undone after each module of this folder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCHLAB_CACHE", str(jax_cache))
        yield
