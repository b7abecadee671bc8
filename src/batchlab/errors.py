"""Exceptions shared by every layer.

The CLI maps :class:`InputError` (and its subclasses) to a one-line message on stderr and exit
status 2; nothing else in the library prints or exits.
"""

from __future__ import annotations

__all__ = ["InputError", "DataMissingError"]


class InputError(ValueError):
    """Bad user input: a flag, a spec file, a spectrum or a hyperparameter out of range.

    The message is one line that names the problem, e.g.
    ``"learning_rate must be > 0, got -0.1"``.
    """


class DataMissingError(InputError):
    """A workload's locally installed data set is missing.

    The message names the install command, e.g.
    ``"Fashion-MNIST not found in /usr/share/datasets/fashion-mnist; install it with:
    apt-get install -y dataset-fashion-mnist"``.
    """
