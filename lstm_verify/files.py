"""Writing output files without destroying anything the tool did not create.

:func:`write_file` is how the tool puts a file at a path the user chose:

* without ``force`` the file is created exclusively: the content goes to a fully written,
  flushed temporary file beside the target, which is then hard-linked to the target name
  (``link`` never replaces an existing name), so a file that appears at the path while the
  content is being generated is kept and reported, never overwritten. On a file system without
  hard links the target is opened with ``O_CREAT | O_EXCL`` instead.
* with ``force`` only a regular file may be replaced; a symbolic link, a directory, a FIFO, a
  socket or a device node at the path is refused. The replacement is a ``rename`` of the
  temporary file onto the path, which never follows a link at the destination; the replaced
  file's permission bits are kept.

New files get the permissions of an ordinary ``open`` (``0o666`` less the umask).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import LstmVerifyError


class OutputError(LstmVerifyError, OSError):
    """An output path cannot be written without destroying something, or at all."""

    def __init__(self, message: str):
        super().__init__(message)

    def __str__(self):
        return self.args[0]


TEMP_MARK = ".lstm-verify-tmp-"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def kind_of(path) -> str | None:
    """None if nothing is at ``path`` (not following a final symbolic link), else "a regular
    file", "a directory", "a symbolic link", ..."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return "a regular file" if stat.S_ISREG(mode) else _kind(mode)


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}")


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


def _create_temp(path: Path, data: bytes, mode: int) -> Path:
    """A new, fully written and flushed file beside ``path``, created with ``mode`` (the umask
    applies)."""
    for _ in range(100):
        tmp = _temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise OutputError(f"cannot write {path}: no free temporary name beside it")
    try:
        _write_fd(fd, data)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    return tmp


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(path) -> None:
    """Flush a directory's entries (after a rename into it); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path, data, force: bool = False, *, what: str = "") -> Path:
    """Write ``data`` (str, as UTF-8, or bytes) to ``path``; returns the path.

    Without ``force`` an existing entry at ``path`` of any kind is an :class:`OutputError`,
    including one created while this function runs. With ``force`` a regular file is replaced
    atomically (readers see the old or the new content, never a mix); anything else at the path
    (symbolic link, directory, FIFO, socket, device) is an :class:`OutputError`. The parent
    folder must exist. ``what`` prefixes the messages (e.g. ``"--output"``)."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {label}: folder {parent} does not exist")
    existing = _check_target(path, label, force)
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o666
    try:
        tmp = _create_temp(path, data, mode)
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {_strerror(exc)}") from None
    try:
        if existing is not None:
            os.chmod(tmp, mode)  # the umask must not narrow a replaced file's permissions
            _replace_regular(tmp, path, label)
        else:
            _link_new(tmp, path, label, data)
    finally:
        _unlink_quietly(tmp)
    fsync_dir(parent)
    return path


def _check_target(path: Path, label: str, force: bool):
    """The lstat of an existing regular file that may be replaced, None if nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {_strerror(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{label} exists and is {_kind(st.st_mode)}; only a regular file is ever "
                          "replaced")  # fmt: skip
    if not force:
        raise OutputError(f"{label} exists; pass --force to replace it")
    return st


def _replace_regular(tmp: Path, path: Path, label: str) -> None:
    # a last look just before the rename: what appeared meanwhile must still be a regular file
    # (rename itself never follows a link at the destination and fails on a directory)
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"{label} became {_kind(mode)} while writing; not replaced")
    except FileNotFoundError:
        pass
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot replace {label}: {_strerror(exc)}") from None


def _link_new(tmp: Path, path: Path, label: str, data: bytes) -> None:
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise OutputError(f"{label} was created by something else while writing; kept it, "
                          "pass --force to replace it") from None  # fmt: skip
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                             errno.ENOSYS):  # fmt: skip
            raise OutputError(f"cannot write {label}: {_strerror(exc)}") from None
    # no hard links here: create the name exclusively and write into it
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        raise OutputError(f"{label} was created by something else while writing; kept it, "
                          "pass --force to replace it") from None  # fmt: skip
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {_strerror(exc)}") from None
    try:
        _write_fd(fd, data)
    except BaseException as exc:
        os.close(fd)
        _unlink_quietly(path)  # created exclusively above: it is ours
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {label}: {_strerror(exc)}") from None
        raise
    os.close(fd)


__all__ = ["TEMP_MARK", "OutputError", "fsync_dir", "kind_of", "write_file"]
