"""How long-running work reports where it is: the CLI draws it on a terminal only.

A report is a step ("Reading crimes") and how much of it is done, as a fraction from 0 to
1, or ``None`` when that is not known (the display then shows activity, not a bar).
Reports carry names from the spec and counts of work done, never values from the data.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "quiet"]

Progress = Callable[[str, float | None], None]


def quiet(step: str, fraction: float | None) -> None:
    """No report (the default)."""
