"""Private temporary folders for working copies of the microdata.

A release stages its inputs (checked columns, then each input's truncated records) on
disk, so that memory stays bounded whatever the inputs' size. Those copies are as private
as the inputs: they live in a folder only the current user can read, named after the
process, removed when the work ends, and removed by the next run if the process was
killed before it could clean up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PREFIX", "alive", "private_folder", "umask"]

PREFIX = "publisher-private-"


@contextmanager
def private_folder() -> Iterator[Path]:
    """A new private folder (mode 0700), removed with everything in it on exit."""
    _remove_abandoned()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as folder:
        yield Path(folder)


def _remove_abandoned() -> None:
    """Remove the folders of runs that were killed (their process is gone): they hold a
    copy of the microdata, which must not outlive its run."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if not pid.isdigit() or alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def umask() -> int:
    """The process's file-creation mask, read without changing it where the system says
    it (Linux's ``/proc``): setting and restoring it, the only portable way, would give
    files created meanwhile by another thread (the dry run runs beside the reading of the
    inputs) the mask set for that instant."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    current = os.umask(0o077)  # for that instant, the most private mask, not the least
    os.umask(current)
    return current
