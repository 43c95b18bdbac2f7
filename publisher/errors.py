"""Errors a person can act on.

Library code raises these; only ``cli.py`` turns them into ``Error: ...`` lines and exit
codes. Messages name the file, the YAML path or column, what was expected and what to do.
They never contain a raw data value.

Messages quote spec text and file names, which anyone can write: :func:`printable` shows
every character a terminal would act on (line breaks, escape sequences, C1 controls,
right-to-left overrides) as a visible escape, so a message is always one line and prints
exactly what it says.
"""

from __future__ import annotations

import re

__all__ = [
    "BudgetError",
    "InputError",
    "PackageError",
    "PublisherError",
    "SpecError",
    "printable",
]

# C0 and C1 controls, DEL, and the invisible characters that reorder or hide text on a
# terminal: bidirectional marks, embeddings, overrides and isolates, line and paragraph
# separators, and the byte order mark / zero-width no-break space.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every control or invisible formatting character shown as an escape
    (``\\n``, ``\\x1b``, ``\\u202e``): safe to print on a terminal, on one line."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in _NAMED:
            return _NAMED[char]
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNSAFE.sub(escape, text)


class PublisherError(Exception):
    """Base class: a problem the user can fix. ``problems`` holds one line per problem."""

    def __init__(self, problems: str | list[str]) -> None:
        lines = [problems] if isinstance(problems, str) else list(problems)
        # One problem is one printable line, whatever spec text or file name it quotes.
        self.problems = [printable(line) for line in lines]
        super().__init__("\n".join(self.problems))


class SpecError(PublisherError):
    """The release spec is not valid (YAML, keys, types, references)."""


class InputError(PublisherError):
    """An input data file is missing, unreadable or does not match the spec."""


class PackageError(PublisherError):
    """A data package is missing, incomplete or fails validation."""


class BudgetError(PublisherError):
    """The privacy budget ledger refuses a release (cap, version) or cannot be used."""
