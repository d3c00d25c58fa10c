"""Load generated source as a module (tracebacks show its lines), with an on-disk cache."""

from __future__ import annotations

import hashlib
import linecache
import os
import tempfile
import types
from functools import lru_cache
from pathlib import Path

from .codegen import generate
from .ir import CellIR

_GENERATOR_FILES = ("codegen.py", "derive.py", "functions.py", "ir.py", "spec.py", "masks.py")


@lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the code that generates source: a change to it invalidates the cache."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _GENERATOR_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path | None:
    env = os.environ.get("LSTM_VERIFY_CACHE")
    if env == "0":
        return None
    return Path(env) if env else Path.home() / ".cache" / "lstm_verify"


def source(ir: CellIR, backend: str, use_cache: bool = True) -> str:
    """Generated source for a cell, from the disk cache when the spec and generator match."""
    directory = cache_dir() if use_cache else None
    key = f"{ir.name}-{backend}-{ir.spec.sha256[:16]}-{generator_hash()}.py"
    if directory is not None:
        try:
            return (directory / key).read_text(encoding="utf-8")
        except OSError:
            pass
    text = generate(ir, backend)
    if directory is not None:
        write_atomic(directory / key, text, quiet=True)
    return text


def write_atomic(path: Path, text: str, quiet: bool = False) -> None:
    """Write a file so that readers see the old content or the whole new one, never a part."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given, not mkstemp's 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    code = compile(text, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - our generated code, never spec text
    module.SOURCE = text
    return module
