"""Text that looks the same but is not: Unicode TR39 skeletons and mixed-script words.

Two category keys that differ only in lookalike letters ("Kent" spelt with a Cyrillic
e, U+0435) would publish two rows no reader can tell apart. TR39 (Unicode Security
Mechanisms, section 4) defines the *skeleton* of a text: its NFD form with each character
replaced by the prototype of its class in the confusables table, in NFD again; two texts
are confusable exactly when their skeletons are equal. The table is Unicode's
confusables data as the ``confusable_homoglyphs`` package ships it, with each character's
script (Unicode's Scripts data) for :func:`mixed_script`.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from confusable_homoglyphs import categories, confusables  # type: ignore[import-untyped]

__all__ = ["code_point", "difference", "mixed_script", "skeleton"]

# The scripts whose letters look alike (the Latin, Cyrillic and Greek capital P): a word
# mixing two of them is how lookalike keys arise, and no word of a real key needs to.
ALIKE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})
# A word: a run of letters (no digits, punctuation or spaces).
_WORD = re.compile(r"[^\W\d_]+")
# The package wraps right-to-left characters in left-to-right marks for display.
_DISPLAY_MARK = "\u200e"


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each character of the confusables table mapped to its class's prototype.

    The package lists, for a character, the prototype it maps to (one entry) or, for a
    prototype, every character mapped to it. A class of two characters lists each under
    the other, so its prototype is chosen as the smaller: equal skeletons, which is all
    that is compared, do not depend on that choice.
    """
    table = {
        source.replace(_DISPLAY_MARK, ""): [
            entry["c"].replace(_DISPLAY_MARK, "") for entry in entries
        ]
        for source, entries in confusables.confusables_data.items()
    }
    prototypes: dict[str, str] = {}
    for source, targets in table.items():
        if len(source) != 1 or len(targets) != 1:
            continue  # a prototype (its list is what maps to it) or a sequence
        target = targets[0]
        if table.get(target) == [source]:
            target = min(source, target)
        prototypes[source] = target
    return prototypes


def skeleton(text: str) -> str:
    """TR39's skeleton of ``text``: equal for two texts exactly when they look the same."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(ch, ch) for ch in decomposed))


def mixed_script(text: str) -> tuple[str, str] | None:
    """The first word of ``text`` whose letters come from two of Latin, Greek and Cyrillic
    ("Kent" spelt with a Cyrillic e, U+0435), with its first letter of another script than
    the word's first letter; None when there is none. Digits, punctuation, spaces and combining
    accents belong to no script here, and other scripts are not looked at."""
    for word in _WORD.findall(text):
        scripts = [(categories.alias(ch), ch) for ch in word]
        alike = [(script, ch) for script, ch in scripts if script in ALIKE_SCRIPTS]
        odd = next((ch for script, ch in alike if script != alike[0][0]), None) if alike else None
        if odd is not None:
            return word, odd
    return None


def code_point(char: str) -> str:
    """A character as a message shows it: ``U+0435 (CYRILLIC SMALL LETTER IE)``."""
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def difference(text: str, other: str) -> str:
    """Where ``text`` differs from its lookalike ``other``, for a message: "character 2 is
    U+0435 (CYRILLIC SMALL LETTER IE) here, U+0065 (LATIN SMALL LETTER E) there"."""
    index = next(
        (i for i, (a, b) in enumerate(zip(text, other, strict=False)) if a != b),
        min(len(text), len(other)),
    )

    def described(source: str) -> str:
        return code_point(source[index]) if index < len(source) else "nothing"

    return f"character {index + 1} is {described(text)} here, {described(other)} there"
