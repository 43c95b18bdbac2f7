"""Interrupts (Ctrl-C, or SIGTERM from a service manager or ``kill``) end a run cleanly.

While :func:`handled` is active, SIGINT and SIGTERM raise :class:`Interrupted`, which is
not an ``Exception``: it unwinds through every ``finally`` and cleanup handler (staging
folders removed, the ledger's reservation marked failed) up to the command line, which
exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

An exception raised inside a callback from native code (OpenDP's Rust library calls back
into Python) is printed as "ignored" and lost. So the signal is also *recorded*, and
:func:`checkpoint` raises it again at every stage boundary: an interrupt can be delayed
until the native call returns, never swallowed. :func:`deferred` holds interrupts back
over a few steps that must happen together (a reservation and the ``try`` that fails it;
the swap of the package and the ledger's commit), and the next checkpoint raises them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["SIGNALS", "Interrupted", "checkpoint", "deferred", "handled"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was interrupted by ``signum``; ``outcome`` says what was left behind."""

    def __init__(self, signum: int, outcome: str = "nothing new was published") -> None:
        super().__init__(signum, outcome)
        self.signum = signum
        self.outcome = outcome

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    received: int | None = None
    deferring = 0
    active = False


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    first = _state.received is None
    if first:
        _state.received = signum
    # A second signal during the cleanup of the first is recorded only: cleanup finishes.
    if first and not _state.deferring:
        raise Interrupted(signum)


def _unraisable(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        # Raised inside a native callback and lost there: recorded, raised at the next
        # checkpoint, so it is not printed as a stray "Exception ignored" message.
        if isinstance(unraisable.exc_value, Interrupted):
            return
        previous(unraisable)

    return hook


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (main thread only;
    elsewhere the block runs with the signals as they were)."""
    try:
        previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(previous_hook)
    _state.received, _state.deferring, _state.active = None, 0, True
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
        _state.received, _state.deferring, _state.active = None, 0, False


def checkpoint() -> None:
    """Raise :class:`Interrupted` if a signal arrived and was not raised (or was lost)."""
    if _state.received is not None and not _state.deferring:
        raise Interrupted(_state.received)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold interrupts back during the block: a signal is recorded, and raised by the
    next :func:`checkpoint` after it."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
