"""Import references to user code (``file.py:Name``, ``package.module:Name``) in the registries and studies:
resolution, the protocol checks with their one-line errors, ``+ema``, and the code identity in trial ids."""

from __future__ import annotations

import textwrap

import pytest

from batchlab.errors import InputError
from batchlab.optim.registry import get_optimizer, optimizer_code
from batchlab.study.design import make_design
from batchlab.study.spec import load_spec, parse_spec
from batchlab.userref import absolute, code_digest, resolve, split_reference
from batchlab.workloads.registry import get_workload, workload_class, workload_code

OPTIMIZER = """
import optax
from batchlab.optim import gradient_spec
from batchlab.optim.hyperparameters import learning_rate

def transform(hyper):
    return optax.scale(-hyper["learning_rate"])

plain = gradient_spec("plain", (learning_rate({lr}, (1e-3, 1.0)),), transform, "plain SGD")
not_a_spec = 3
"""

WORKLOAD = """
import dataclasses
from batchlab.workloads.digits import DigitsCnn
from batchlab.workloads.classification import ClassificationWorkload

@dataclasses.dataclass(frozen=True)
class Digits(DigitsCnn):
    width: int = 4  # {tag}

class Abstract(ClassificationWorkload):
    pass

class Undecorated(DigitsCnn):
    pass
"""


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def user_files(tmp_path):
    optimizer = write(tmp_path / "my_opt.py", OPTIMIZER.format(lr=0.1))
    workload = write(tmp_path / "my_work.py", WORKLOAD.format(tag="a"))
    return tmp_path, optimizer, workload


def test_split_and_absolute():
    assert split_reference("C:/x/y.py:Name") == ("C:/x/y.py", "Name")
    assert absolute("sub/w.py:W", "/base") == "/base/sub/w.py:W"
    assert absolute("/abs/w.py:W", "/base") == "/abs/w.py:W"
    for bad in ("w.py:", ":Name", "w.py:not-an-identifier"):
        with pytest.raises(InputError, match="malformed reference"):
            split_reference(bad)


def test_optimizer_reference_and_ema(user_files):
    _, optimizer, _ = user_files
    ref = f"{optimizer}:plain"
    spec = get_optimizer(ref)
    assert spec.name == ref and not spec.ema  # renamed to the reference: distinct compiled-step key
    assert spec.validate({})["learning_rate"] == 0.1
    ema = get_optimizer(ref + "+ema")
    assert ema.ema and ema.name == ref + "+ema" and "ema_decay" in {hp.name for hp in ema.hyperparameters}
    assert optimizer_code(ref) == optimizer_code(ref + "+ema") == code_digest(ref)
    assert len(code_digest(ref)) == 12 and optimizer_code("adam") is None


def test_workload_reference(user_files):
    _, _, workload = user_files
    ref = f"{workload}:Digits"
    assert get_workload(ref, width=8).width == 8
    with pytest.raises(InputError, match="unknown option"):
        get_workload(ref, depth=2)
    assert workload_code(ref) == code_digest(ref) and workload_code("digits-cnn") is None


@pytest.mark.parametrize("ref, message", [
    ("missing.py:X", "cannot import 'missing.py:X': cannot read missing.py"),
    ("no_such_package_xyz.mod:X", "cannot import 'no_such_package_xyz.mod:X': ModuleNotFoundError"),
    ("{opt}:nothing", "has no attribute 'nothing'"),
    ("{opt}:not_a_spec", "is not a batchlab.optim.OptimizerSpec"),
    ("{work}:Digits", "is not a batchlab.optim.OptimizerSpec"),
])
def test_optimizer_reference_errors(user_files, ref, message):
    _, optimizer, workload = user_files
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        get_optimizer(ref.format(opt=optimizer, work=workload))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("attribute, message", [
    ("Abstract", "is abstract: it does not implement"),
    ("Undecorated", "must be decorated @dataclasses.dataclass(frozen=True)"),
    ("dataclasses", "is not a subclass of batchlab.workloads.base.Workload"),
])
def test_workload_reference_errors(user_files, attribute, message):
    _, _, workload = user_files
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        workload_class(f"{workload}:{attribute}")


def test_missing_class_attribute_and_import_error(tmp_path):
    source = WORKLOAD.format(tag="b")
    source = source.replace("class Abstract(ClassificationWorkload):\n    pass",
                            "class Abstract(ClassificationWorkload):\n    pass\n\n"
                            "@dataclasses.dataclass(frozen=True)\nclass Bare(ClassificationWorkload):\n"
                            "    load_arrays = init_params = apply = None\n")
    path = write(tmp_path / "bare.py", source)
    with pytest.raises(InputError, match="does not set the class attribute\\(s\\) name, version, target_value"):
        workload_class(f"{path}:Bare")
    broken = write(tmp_path / "broken.py", "raise RuntimeError('boom')\n")
    with pytest.raises(InputError, match="broken.py raised RuntimeError: boom"):
        resolve(f"{broken}:X")


def _spec(workload: str, optimizer: str) -> dict:
    return {"workload": workload, "batch_sizes": [16], "trials": 2, "budget": {"steps": 10},
            "optimizers": {optimizer: {}, "sgd": {}}}


def test_trial_ids_include_the_code(user_files):
    folder, optimizer, workload = user_files
    spec = parse_spec(_spec(f"{workload}:Digits", f"{optimizer}:plain+ema"))
    trials = make_design(spec)
    user = [t for t in trials if t.optimizer != "sgd"]
    builtin = [t for t in trials if t.optimizer == "sgd"]
    assert user[0].config["optimizer_code"] == code_digest(f"{optimizer}:plain")
    assert all(t.config["workload_code"] == code_digest(f"{workload}:Digits") for t in trials)
    assert all("optimizer_code" not in t.config for t in builtin)
    # changed code → a new module, a new digest and new trial ids
    changed = write(folder / "my_opt2.py", OPTIMIZER.format(lr=0.2))
    assert code_digest(f"{changed}:plain") != code_digest(f"{optimizer}:plain")
    moved = write(folder / "my_work.py", WORKLOAD.format(tag="c"))
    resolve.cache_clear()
    workload_class.cache_clear()
    again = make_design(parse_spec(_spec(f"{moved}:Digits", f"{optimizer}:plain+ema")))
    assert {t.id for t in again}.isdisjoint(t.id for t in trials)


def test_spec_file_references_are_relative_to_its_folder(user_files, monkeypatch, tmp_path_factory):
    folder, _, _ = user_files
    (folder / "study.toml").write_text(
        'workload = "my_work.py:Digits"\nbatch_sizes = [16]\ntrials = 1\n[budget]\nsteps = 10\n'
        '[optimizers."my_opt.py:plain"]\n[optimizers."my_opt.py:plain+ema"]\n')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    spec = load_spec(folder / "study.toml")
    assert spec.workload == f"{folder / 'my_work.py'}:Digits"
    assert [o.name for o in spec.optimizers] == [f"{folder / 'my_opt.py'}:plain", f"{folder / 'my_opt.py'}:plain+ema"]
    with pytest.raises(InputError, match="cannot read my_work.py"):  # the CLI: relative to the current folder
        parse_spec(_spec("my_work.py:Digits", "sgd"))


def test_moving_the_files_keeps_the_trial_ids(tmp_path_factory):
    """A file reference enters the id as file name, object name and code digest, not its folder."""
    import pathlib
    import shutil

    examples = pathlib.Path(__file__).resolve().parent.parent / "examples"
    designs = []
    for place in ("here", "there"):
        folder = tmp_path_factory.mktemp(place)
        for name in ("custom_workload.py", "custom_optimizer.py", "custom_study.toml"):
            shutil.copy(examples / name, folder / name)
        spec = load_spec(folder / "custom_study.toml")
        assert str(folder) in spec.workload  # executed from where it is ...
        designs.append(make_design(spec))
    assert [t.id for t in designs[0]] == [t.id for t in designs[1]]  # ... identified by what it is
    assert designs[0][0].config["workload"] != designs[1][0].config["workload"]
