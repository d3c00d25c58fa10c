"""Load generated source as a module (tracebacks show its lines), with an on-disk cache.

The cache keeps generated source between processes, because generating it (SymPy) costs
seconds per cell. Its entries are executed, so nothing is taken from it without a check.

Where: ``LSTM_VERIFY_CACHE`` if set (``0`` disables the cache), else
``$XDG_CACHE_HOME/lstm_verify`` (when ``XDG_CACHE_HOME`` is an absolute path, as the XDG
specification requires), else ``~/.cache/lstm_verify``.

Key: a sha256 of the cache format, the spec's sha256, the generator hash (of the source of
every module of the package), the backend, the cell name, and the versions of Python, SymPy,
NumPy and torch (torch's from ``importlib.metadata`` when it is not imported; ``absent`` when
it is not installed; it is never imported here). The entry's file name carries the cell name,
backend, spec hash prefix and key prefix.

Integrity and authenticity: a checksum stored next to the source only detects accidents:
whoever can write the folder can write a matching checksum. Each entry is therefore stored as
one header line ``# lstm-verify cache entry v1 hmac-sha256=<hex>`` followed by the source,
where the HMAC-SHA256 is keyed with a per-user secret of 32 random bytes and covers the full
cache key and the source bytes. The secret lives in the cache folder in ``.hmac-key``, made
0600 and published atomically (written and fsynced under a temporary name, then hard-linked
into place, so that no process ever reads a half-written key), and checked on every read:
opened with ``O_NOFOLLOW`` (a symbolic link is refused), then ``fstat``: a regular file, owned
by the effective user, with no group or other permission bits. Someone who can plant files in
the folder but cannot read the secret cannot make an entry that verifies; an entry copied from
another key does not verify either, since the key is inside the MAC.

As a second line of defence, the folder itself must be owned by the effective user and not
writable by group or others. It is created with mode 0700, never followed if it is a symbolic
link (``lstat``, then opened with ``O_DIRECTORY | O_NOFOLLOW`` and checked again with
``fstat``), and every later operation (the key, entries, temporary files, renames) is made
relative to that checked directory descriptor, so that replacing the folder after the check
changes nothing.

Failures: an entry that is missing, truncated, empty, garbage, not UTF-8, not a regular file,
owned by someone else, too large or with a wrong MAC is a miss: the source is generated again
and the entry replaced atomically (temporary file fsynced, ``os.replace``, directory fsynced).
No raw error reaches the caller. When the folder or the key fails a check, or an entry cannot
be written, a :class:`CacheWarning` naming the folder and the reason is issued once per
process and the work goes on without the cache. On platforms without these primitives
(``O_NOFOLLOW``, ``*at`` calls, user ids: Windows) the cache is not used, with the same
warning.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import importlib.metadata
import linecache
import os
import re
import secrets
import stat
import sys
import tempfile
import threading
import types
import warnings
from functools import lru_cache
from pathlib import Path

from .codegen import generate
from .hygiene import audit_python
from .ir import CellIR

FORMAT = 1
_MAGIC = b"# lstm-verify cache entry v1 hmac-sha256="
_SECRET_NAME = ".hmac-key"
_SECRET_BYTES = 32
_MAX_ENTRY = 16 << 20  # generated sources are tens of kB
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted under an entry's name must not block
_SUPPORTED = (
    os.name == "posix"
    and hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "O_DIRECTORY")
    and hasattr(os, "geteuid")
    and {os.open, os.rename, os.link, os.unlink} <= os.supports_dir_fd
)


class CacheWarning(UserWarning):
    """The generated-code cache could not be used or written; code is generated without it."""


class _Unusable(Exception):
    """The cache folder or its key failed a check; the message is the reason."""


def _package_sources() -> list[Path]:
    """Every module of the package, in a fixed order."""
    here = Path(__file__).parent
    return sorted(p for p in here.rglob("*.py") if "__pycache__" not in p.parts)


@lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the package's source: a change to any module invalidates the cache.

    All modules, not a list of the generator's: the generated text depends on whatever the
    generator imports (``hygiene`` for names and quoting, ``functions``, ``derive``...), and a
    module left off a list would let a stale entry verify after that module changed.
    """
    h = hashlib.sha256()
    here = Path(__file__).parent
    for path in _package_sources():
        h.update(path.relative_to(here).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _version(package: str) -> str:
    """Version of a package: the imported module's, else the installed one's, else 'absent'."""
    module = sys.modules.get(package)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
    except Exception:  # noqa: BLE001 - broken metadata must not break generation
        return "unknown"


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    """Versions the generated source may depend on, part of every cache key."""
    python = f"{sys.implementation.name} {'.'.join(map(str, sys.version_info[:3]))}"
    return (("python", python),) + tuple((p, _version(p)) for p in ("sympy", "numpy", "torch"))


def _key(ir: CellIR, backend: str) -> str:
    parts = [
        f"format={FORMAT}",
        f"name={ir.name}",
        f"backend={backend}",
        f"spec={ir.spec.sha256}",
        f"generator={generator_hash()}",
    ] + [f"{package}={version}" for package, version in _versions()]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _entry_name(ir: CellIR, backend: str, key: str) -> str:
    label = re.sub(r"[^A-Za-z0-9_-]", "_", f"{ir.name}-{backend}")[:64]
    return f"{label}-{ir.spec.sha256[:16]}-{key[:32]}.py"


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is disabled (``LSTM_VERIFY_CACHE=0``)."""
    env = os.environ.get("LSTM_VERIFY_CACHE")
    if env == "0":
        return None
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lstm_verify"
    try:
        return Path.home() / ".cache" / "lstm_verify"
    except RuntimeError:  # no home directory to be found
        return None


def source(ir: CellIR, backend: str, use_cache: bool = True) -> str:
    """Generated source for a cell, from the disk cache when an entry for its key verifies."""
    directory = cache_dir() if use_cache else None
    if directory is None:
        return generate(ir, backend)
    key = _key(ir, backend)
    name = _entry_name(ir, backend, key)
    try:
        dfd = _open_folder(directory)
    except _Unusable as exc:
        _warn_once(directory, str(exc))
        return generate(ir, backend)
    try:
        try:
            secret = _secret(dfd)
        except _Unusable as exc:
            _warn_once(directory, str(exc))
            return generate(ir, backend)
        cached = _read_entry(dfd, name, key, secret)
        if cached is not None:
            return cached
        text = generate(ir, backend)
        try:
            _write_entry(dfd, name, _pack(text, key, secret))
        except (OSError, UnicodeError) as exc:
            _warn_once(directory, f"cannot write {name}: {_reason(exc)}")
        return text
    finally:
        os.close(dfd)


_warned = False
_warn_lock = threading.Lock()


def _warn_once(directory: Path, reason: str) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        f"generated-code cache {directory} not used: {reason}; generating code without it",
        CacheWarning,
        stacklevel=3,
    )


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _current_uid() -> int:
    return os.geteuid()


def _check_owner(st: os.stat_result, what: str) -> None:
    uid = _current_uid()
    if st.st_uid != uid:
        raise _Unusable(f"{what} is owned by uid {st.st_uid}, not by this user (uid {uid})")


def _open_folder(directory: Path) -> int:
    """Create (0700) and open the cache folder; it must be ours and writable by no one else."""
    if not _SUPPORTED:
        raise _Unusable("this platform lacks the checks the cache needs (O_NOFOLLOW, *at calls)")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Unusable(f"cannot create {directory.parent}: {_reason(exc)}") from None
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _Unusable(f"cannot create it: {_reason(exc)}") from None
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise _Unusable(f"cannot read it: {_reason(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise _Unusable("it is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise _Unusable("it is not a folder")
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        raise _Unusable(f"cannot open it: {_reason(exc)}") from None
    try:
        st = os.fstat(dfd)
        if not stat.S_ISDIR(st.st_mode):
            raise _Unusable("it is not a folder")
        _check_owner(st, "it")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise _Unusable(
                f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}; "
                "make it 0700 or set LSTM_VERIFY_CACHE)"
            )
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _secret(dfd: int) -> bytes:
    """The per-user HMAC key kept in the cache folder, made on first use."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
    try:
        fd = os.open(_SECRET_NAME, flags, dir_fd=dfd)
    except FileNotFoundError:
        return _create_secret(dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Unusable(f"its key file {_SECRET_NAME} is a symbolic link") from None
        raise _Unusable(f"cannot open its key file {_SECRET_NAME}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable(f"its key file {_SECRET_NAME} is not a regular file")
        _check_owner(st, f"its key file {_SECRET_NAME}")
        if st.st_mode & 0o077:
            raise _Unusable(
                f"its key file {_SECRET_NAME} has mode {stat.S_IMODE(st.st_mode):04o}, not 0600"
            )
        data = _read_at_most(fd, _SECRET_BYTES + 1)
    except OSError as exc:
        raise _Unusable(f"cannot read its key file {_SECRET_NAME}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) != _SECRET_BYTES:  # ours (checked above) but damaged: entries made with it
        return _create_secret(dfd, replace=True)  # are lost anyway, so make a new one
    return data


def _create_secret(dfd: int, replace: bool = False) -> bytes:
    data = secrets.token_bytes(_SECRET_BYTES)
    try:
        tmp = _write_temp(dfd, _SECRET_NAME, data)
        try:
            if replace:
                os.replace(tmp, _SECRET_NAME, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                try:  # a hard link publishes the whole key or nothing, and never replaces one
                    os.link(tmp, _SECRET_NAME, src_dir_fd=dfd, dst_dir_fd=dfd)
                except FileExistsError:  # another process made it first: use theirs
                    return _secret(dfd)
        finally:
            _unlink(dfd, tmp)
    except OSError as exc:
        raise _Unusable(f"cannot create its key file {_SECRET_NAME}: {_reason(exc)}") from None
    _fsync_fd(dfd)
    return data


def _mac(secret: bytes, key: str, body: bytes) -> bytes:
    h = hmac.new(secret, b"lstm-verify cache entry v1\0", hashlib.sha256)
    h.update(key.encode("ascii") + b"\0")
    h.update(body)
    return h.hexdigest().encode("ascii")


def _pack(text: str, key: str, secret: bytes) -> bytes:
    body = text.encode("utf-8")
    return _MAGIC + _mac(secret, key, body) + b"\n" + body


def _unpack(data: bytes, key: str, secret: bytes) -> str | None:
    header, newline, body = data.partition(b"\n")
    if not newline or not header.startswith(_MAGIC):
        return None
    if not hmac.compare_digest(header[len(_MAGIC) :], _mac(secret, key, body)):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read_entry(dfd: int, name: str, key: str, secret: bytes) -> str | None:
    """The verified source under ``name``, or None for anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != _current_uid() or st.st_size > _MAX_ENTRY:
            return None
        data = _read_at_most(fd, _MAX_ENTRY + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if len(data) > _MAX_ENTRY else _unpack(data, key, secret)


def _write_entry(dfd: int, name: str, data: bytes) -> None:
    tmp = _write_temp(dfd, name, data)
    try:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        _unlink(dfd, tmp)
        raise
    _fsync_fd(dfd)


def _write_temp(dfd: int, name: str, data: bytes) -> str:
    """A new 0600 file in the folder holding ``data``, fsynced; returns its name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(dfd, tmp)
        raise
    return tmp


def _unlink(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _fsync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory; the rename is done anyway
        pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    except OSError:
        return
    try:
        _fsync_fd(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, quiet: bool = False) -> None:
    """Write a file so that readers see the old content or the whole new one, never a part.

    The data is fsynced before the rename and the folder after it (best effort), so that a
    crash leaves the old file or the whole new one on disk too.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given, not mkstemp's 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError:
        if not quiet:
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_counter = iter(range(10**9))


def load(text: str, label: str) -> types.ModuleType:
    """Compile generated source into a fresh module, registered in linecache."""
    filename = f"<lstm-verify generated {label} #{next(_counter)}>"
    module = types.ModuleType(f"lstm_verify_generated_{label}")
    module.__file__ = filename
    audit_python(text, label)  # defence in depth: never executed unless it passes
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    code = compile(text, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - our generated code, never spec text
    module.SOURCE = text
    return module
