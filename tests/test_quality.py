"""The code style and types the project promises (STYLE.md): ruff and strict mypy pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "publisher", "tests", "benchmarks"],
        ["ruff", "format", "--check", "publisher", "tests", "benchmarks"],
        ["mypy"],
    ],
    ids=["ruff-lint", "ruff-format", "mypy-strict"],
)
def test_tool_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_noise_is_drawn_by_opendp_only() -> None:
    # The demo generator makes synthetic microdata with numpy; nothing else may draw random
    # numbers, so every published number's noise comes from OpenDP's vetted samplers.
    forbidden = ("np.random", "numpy.random", "import random", "from random", "secrets.")
    for path in (ROOT / "publisher").rglob("*.py"):
        if path.name == "demo.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not [word for word in forbidden if word in text], path.name
