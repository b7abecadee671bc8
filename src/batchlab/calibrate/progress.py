"""Progress hooks: the library reports progress through plain callables and never prints.

A :data:`Stages` hook is called once per stage with its name and number of units and returns a
:data:`Tick`, called once per unit done.  The CLI turns stages into rich progress bars on stderr.

Example:
    >>> def stages(name, total):
    ...     print(f"{name}: {total} units")
    ...     return lambda: None
"""

from __future__ import annotations

from typing import Callable

__all__ = ["Tick", "Stages", "no_progress"]

Tick = Callable[[], None]
Stages = Callable[[str, int], Tick]


def no_progress(name: str, total: int) -> Tick:
    """A :data:`Stages` hook that shows nothing."""
    del name, total
    return lambda: None
