"""Reading files that anyone could have put in place: never block on one, never take a
pipe or a device for a file.

Every file the publisher reads (a spec, an input, a ledger) is checked with ``stat``
before it is opened, and opened without blocking (``O_NONBLOCK``), then checked again on
the open descriptor: a named pipe, a device, a socket or a directory is refused with what
it is, instead of hanging a command or reading forever from ``/dev/zero``. (Files of a
package are read through :func:`publisher.model.read_file`, which also refuses links.)
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "NotARegularFile",
    "describe",
    "kind_problem",
    "link_on",
    "open_regular",
    "read_regular",
    "walk_regular",
]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class NotARegularFile(OSError):
    """A path that exists but is not a regular file (``what`` says what it is)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(errno.EINVAL, what, str(path))
        self.path = path
        self.what = what


def describe(mode: int) -> str:
    """What a ``st_mode`` is, in words ("a regular file", "a named pipe (FIFO)", ...)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def kind_problem(path: Path, *, follow_links: bool = True) -> str | None:
    """Why ``path`` cannot be read as a file ("is a named pipe (FIFO), not a regular
    file"), or None when it is a regular file. A missing path raises FileNotFoundError."""
    mode = (os.stat if follow_links else os.lstat)(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return f"is {describe(mode)}, not a regular file"


@contextmanager
def open_regular(path: Path, *, follow_links: bool = True) -> Iterator[BinaryIO]:
    """``path`` opened for reading in binary, if it is a regular file; else
    :class:`NotARegularFile`. Opening never blocks, whatever ``path`` turns out to be."""
    problem = kind_problem(path, follow_links=follow_links)
    if problem:
        raise NotARegularFile(path, problem)
    try:
        descriptor = os.open(path, _FLAGS | (0 if follow_links else _NOFOLLOW))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotARegularFile(path, "is a symbolic link, not a regular file") from None
        raise
    with _checked(descriptor, path) as stream:
        yield stream


@contextmanager
def _checked(descriptor: int, path: Path) -> Iterator[BinaryIO]:
    """The open ``descriptor`` as a blocking binary stream, once fstat says it is still a
    regular file (the path may have been swapped since it was checked)."""
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, f"is {describe(mode)}, not a regular file")
        os.set_blocking(descriptor, True)
        stream = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with stream:
        yield stream


def read_regular(path: Path, *, limit: int | None = None, follow_links: bool = True) -> bytes:
    """The bytes of a regular file; more than ``limit`` bytes raise ValueError."""
    with open_regular(path, follow_links=follow_links) as stream:
        data = stream.read(-1 if limit is None else limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return data


def link_on(path: Path) -> Path | None:
    """The first symbolic link on ``path`` as it is written (any component), if any."""
    current = Path(path.anchor)
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def walk_regular(root: Path) -> Iterator[tuple[str, str | None]]:
    """Every entry below ``root`` (links not followed), as its POSIX path relative to
    ``root`` and None for a regular file, or what it is for anything else that is not a
    folder (a link, a pipe, a device, a socket). Folders are walked, not listed."""
    for folder, names, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in sorted([*names, *files]):
            path = base / name
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                continue
            relative = path.relative_to(root).as_posix()
            yield relative, None if stat.S_ISREG(mode) else describe(mode)
        # os.walk lists a link to a folder among the folders but does not enter it.
        names[:] = sorted(name for name in names if not (base / name).is_symlink())
