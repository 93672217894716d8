"""Durable, atomic file writes: the one writer everything in this repository uses for a file it writes.

`atomic_write` writes into a hidden temporary file beside the target, fsyncs it, optionally verifies it, renames it
into place (or links it, refusing to replace an existing file) and fsyncs the folder. A kill, a full disk or a
read-only folder therefore never leaves a half-written file under the target's name, and the error is one line.
`append_line` is its counterpart for JSON-lines logs: a line is appended whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable
from typing import BinaryIO

# atomic_write's temporary names: '.<name>.<8 random chars>.tmp'
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


class FileWriteError(ValueError):
    """A file could not be written (full disk, read-only or forbidden folder, an existing file not to replace);
    one line naming the file and saying whether its previous content is intact."""


def oserror_in(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (torch.save reports a failed write as a RuntimeError whose context is it)."""
    for _ in range(8):
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        if exc is None:
            return None
    return None


def _free_bytes(directory: str) -> int | None:
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def write_error(
    exc: BaseException, path: str, directory: str, size_hint: int | None, existed: bool
) -> FileWriteError | None:
    """A one-line FileWriteError for a failed write, or None when `exc` is not about writing (re-raised as is)."""
    if isinstance(exc, FileWriteError) or not isinstance(exc, (OSError, RuntimeError)):
        return None
    cause = oserror_in(exc)
    intact = f"the previous {os.path.basename(path)} is intact" if existed else "nothing was written"
    needed = f" (needed ~{max(size_hint / 2**20, 1):.0f} MB)" if size_hint else ""
    full = cause is not None and cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if cause is None and size_hint is not None:
        free = _free_bytes(directory)
        full = free is not None and free < size_hint
    if full:
        return FileWriteError(f"no space left on device while writing {path}{needed}; {intact}")
    if cause is not None and cause.errno == errno.EROFS:
        return FileWriteError(f"cannot write to folder {directory}: read-only file system; {intact}")
    if cause is not None and cause.errno in (errno.EACCES, errno.EPERM):
        return FileWriteError(f"cannot write to folder {directory}: permission denied; {intact}")
    if cause is not None:
        return FileWriteError(f"could not write {path}: {cause.strerror or cause}; {intact}")
    return FileWriteError(f"could not write {path} ({type(exc).__name__}: {exc}); {intact}")


def missing_folders(path: str) -> list[str]:
    """The folders os.makedirs(path) would create, deepest first (to remove again after a failed write)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_empty_folders(folders: list[str]) -> None:
    """Remove the folders, deepest first, that are still empty; the rest stay."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def refuse_existing(path: str) -> FileWriteError:
    return FileWriteError(f"{path} already exists; refusing to replace it (pass overwrite=True to replace it)")


def _place_without_replacing(tmp: str, path: str) -> None:
    """Give `tmp` the name `path` only if nothing has that name: atomic with a hard link, else check-then-rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise refuse_existing(path) from None
    except (OSError, AttributeError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (
            errno.EPERM,
            errno.EXDEV,
            errno.EMLINK,
            errno.ENOSYS,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
        ):
            raise
        # No hard links here (FAT, some network file systems): a writer racing us between check and rename wins.
        if os.path.lexists(path):
            raise refuse_existing(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], None],
    verify: Callable[[str], None] | None = None,
    *,
    overwrite: bool = True,
    size_hint: int | None = None,
) -> None:
    """Write a file all-or-nothing: `write(f)` into a temp file beside `path`, fsync, `verify(tmp)`, rename.

    On any error (or a kill) before the rename, `path` keeps its previous content; the temp file is removed
    on errors (a hard kill can leave a hidden '.<name>.*.tmp' beside it: see remove_stale_temp_files, never a
    damaged `path`). overwrite=False refuses (FileWriteError) when `path` exists, also when it appears while
    writing. A full disk, a read-only or forbidden folder raise a one-line FileWriteError; size_hint (bytes) is
    the expected size, reported when the disk is full.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    existed = os.path.lexists(path)
    if existed and not overwrite:
        raise refuse_existing(path)
    created = missing_folders(directory)  # a failed write leaves no empty folders behind either
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        remove_empty_folders(created)
        raise write_error(exc, path, directory, size_hint, existed) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, (os.stat(path).st_mode & 0o777) if os.path.exists(path) else 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            _place_without_replacing(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        remove_empty_folders(created)
        error = write_error(exc, path, directory, size_hint, existed)
        if error is None:
            raise
        raise error from None
    with contextlib.suppress(OSError):  # persist the rename itself; not possible on every platform
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[str]:
    """Delete the hidden '.<name>.<8 chars>.tmp' files that atomic_write leaves in `folder` when killed mid-write;
    returns their paths (sorted). Only that name pattern and only regular files are touched; call it when no
    other process is writing into `folder` (a live writer's temp file has the same name)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    removed = []
    for entry in os.scandir(folder):
        if TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise FileWriteError(f"cannot remove stale temporary file {entry.path}: {exc.strerror}") from None
            removed.append(entry.path)
    return sorted(removed)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` and a newline to `path` whole, or leave the file as it was and raise the OSError.

    A full disk must not leave half a line that every later reader of the log trips on. The line goes out in one
    write in append mode, so concurrent appenders cannot interleave; after a failed or short write the file is cut
    back to its size before (unless another writer appended since), and removed if this call created it empty.
    """
    path = os.fspath(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    existed = os.path.exists(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # read too: to check what a failure left
    with os.fdopen(fd, "ab", buffering=0) as file:
        fd = file.fileno()
        before = os.fstat(fd).st_size
        try:
            if (file.write(data) or 0) < len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        except OSError:
            with contextlib.suppress(OSError):
                tail = os.fstat(fd).st_size - before
                if tail <= len(data) and os.pread(fd, tail, before) == data[:tail]:  # ours alone: cut it off
                    os.ftruncate(fd, before)
                if not existed and os.fstat(fd).st_size == 0:
                    os.unlink(path)
            raise
