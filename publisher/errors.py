"""Errors a person can act on.

Library code raises these; only ``cli.py`` turns them into ``Error: ...`` lines and exit
codes. Messages name the file, the YAML path or column, what was expected and what to do.
They never contain a raw data value.
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "InputError",
    "PackageError",
    "PublisherError",
    "SpecError",
]


class PublisherError(Exception):
    """Base class: a problem the user can fix. ``problems`` holds one line per problem."""

    def __init__(self, problems: str | list[str]) -> None:
        lines = [problems] if isinstance(problems, str) else list(problems)
        # One problem is one line, even when it quotes a spec string with a line break.
        self.problems = [line.replace("\r", "\\r").replace("\n", "\\n") for line in lines]
        super().__init__("\n".join(self.problems))


class SpecError(PublisherError):
    """The release spec is not valid (YAML, keys, types, references)."""


class InputError(PublisherError):
    """An input data file is missing, unreadable or does not match the spec."""


class PackageError(PublisherError):
    """A data package is missing, incomplete or fails validation."""


class BudgetError(PublisherError):
    """The privacy budget ledger refuses a release (cap, version) or cannot be used."""
