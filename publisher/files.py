"""Reading files that anyone could have put in place: never block, never follow a link
where none is expected, never leave a folder.

Every file the publisher reads (a spec, an input, a ledger, a package) is checked with
``stat`` before it is opened, and opened without blocking (``O_NONBLOCK``), then checked
again on the open descriptor: a named pipe, a device, a socket or a directory is refused
with what it is, instead of hanging a command or reading forever from ``/dev/zero``.

Paths read from a package (its descriptor, its checksum list) are untrusted:
:func:`untrusted_path` accepts only plain relative names that stay inside the package, and
:func:`open_inside` opens one without following any link on the way.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = [
    "NotARegularFile",
    "describe",
    "kind_problem",
    "link_on",
    "open_inside",
    "open_regular",
    "read_inside",
    "read_regular",
    "untrusted_path",
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
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DRIVE = re.compile(r"[A-Za-z]:")


class NotARegularFile(OSError):
    """A path that exists but is not a regular file (``what`` says what it is), or that
    goes through a link where none is allowed."""

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


def untrusted_path(relative: object) -> str | None:
    """Why a path read from a package cannot name one of its files, or None when it is a
    plain relative POSIX path inside the package (no URL, absolute path, drive, backslash,
    ``..``, ``.``, empty part or control character)."""
    if not isinstance(relative, str) or not relative:
        return "expected the relative path of one file in the package"
    if "://" in relative or relative.startswith("file:"):
        return "is a URL; expected the relative path of a file inside the package"
    posix = PurePosixPath(relative)
    if posix.is_absolute() or relative.startswith("~") or _DRIVE.match(relative):
        return "is absolute; expected a path relative to the package directory"
    if "\\" in relative:
        return "uses a backslash; expected '/' between folders"
    parts = relative.split("/")
    if ".." in parts:
        return "contains '..'; expected a path that stays inside the package"
    if "" in parts or "." in parts:
        return "has an empty or '.' part; expected plain names between single '/'"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in relative):
        return "contains a control character; expected a plain file name"
    return None


def _open_inside(root: Path, relative: str) -> int:
    """A descriptor of ``root/relative`` opened without following any link below
    ``root``: each folder is opened with O_NOFOLLOW from the one before it."""
    parts = relative.split("/")
    folder = os.open(root, os.O_RDONLY | _DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=folder)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotARegularFile(
                        root / relative, f"goes through '{part}', which is not a plain folder"
                    ) from None
                raise
            os.close(folder)
            folder = inner
        mode = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(root / relative, f"is {describe(mode)}, not a regular file")
        return os.open(parts[-1], _FLAGS | _NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)


@contextmanager
def open_inside(root: Path, relative: str) -> Iterator[BinaryIO]:
    """``root/relative`` opened for reading, where ``relative`` comes from an untrusted
    source: it must pass :func:`untrusted_path` (else ValueError) and be a regular file
    reached without any symbolic link below ``root`` (else :class:`NotARegularFile`)."""
    refused = untrusted_path(relative)
    if refused:
        raise ValueError(refused)
    descriptor = _open_inside(root, relative)
    with _checked(descriptor, root / relative) as stream:
        yield stream


def read_inside(root: Path, relative: str, *, limit: int | None = None) -> bytes:
    """The bytes of ``root/relative``, opened as :func:`open_inside` does."""
    with open_inside(root, relative) as stream:
        data = stream.read(-1 if limit is None else limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return data


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
