"""The generated-code cache: nothing from it runs unless it verifies; bad folders are refused."""

import errno
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_verify as lv
from lstm_verify import runtime
from lstm_verify.runtime import CacheWarning

pytestmark = pytest.mark.skipif(
    not runtime._SUPPORTED, reason="the cache needs POSIX file primitives"
)
ROOT = getattr(os, "geteuid", lambda: -1)() == 0


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder (not yet created) and a fresh once-per-process warning flag."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(folder))
    monkeypatch.setattr(runtime, "_warned", False)
    return folder


@pytest.fixture(scope="module")
def ir():
    return lv.load("rnn_tanh").ir


@pytest.fixture(scope="module")
def fresh(ir):
    return runtime.source(ir, "numpy", use_cache=False)


def entry_path(folder, ir, backend="numpy"):
    """The predictable file name of an entry: anyone who can read this package can compute it."""
    return folder / runtime._entry_name(ir, backend, runtime._key(ir, backend))


def no_generation(monkeypatch):
    def fail(ir, backend):
        raise AssertionError("generated although a verified entry was cached")

    monkeypatch.setattr(runtime, "generate", fail)


def verified(folder, path, ir, backend="numpy"):
    secret = (folder / ".hmac-key").read_bytes()
    return runtime._unpack(path.read_bytes(), runtime._key(ir, backend), secret)


def test_entry_is_written_verified_and_served(cache, ir, fresh, monkeypatch):
    assert runtime.source(ir, "numpy") == fresh
    assert stat.S_IMODE(os.lstat(cache).st_mode) == 0o700
    key = cache / ".hmac-key"
    assert stat.S_IMODE(os.lstat(key).st_mode) == 0o600 and len(key.read_bytes()) == 32
    path = entry_path(cache, ir)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"# lstm-verify cache entry v1 hmac-sha256=")
    assert ir.spec.sha256[:16] in path.name
    assert verified(cache, path, ir) == fresh
    assert sorted(p.name for p in cache.iterdir()) == [".hmac-key", path.name]  # no temp files
    no_generation(monkeypatch)
    assert runtime.source(ir, "numpy") == fresh


def test_planted_entry_is_not_executed_and_is_replaced(cache, ir, fresh, tmp_path):
    sentinel = tmp_path / "sentinel"
    payload = f"open({str(sentinel)!r}, 'w').write('ran')\n" + fresh
    runtime.source(ir, "numpy")  # the folder and its key exist, as for a user of the tool
    path = entry_path(cache, ir)
    plain = hashlib.sha256(payload.encode()).hexdigest().encode()
    forged_key = runtime._pack(payload, runtime._key(ir, "numpy"), b"\0" * 32)
    for planted in (payload.encode(), b"# lstm-verify cache entry v1 hmac-sha256=" + plain
                    + b"\n" + payload.encode(), forged_key):  # fmt: skip
        path.write_bytes(planted)
        assert runtime.source(ir, "numpy") == fresh
        assert verified(cache, path, ir) == fresh  # replaced by a correct entry
    path.write_bytes(payload.encode())
    impl = lv.load("rnn_tanh").numpy()
    assert impl.module is not None
    assert not sentinel.exists()


def test_entry_of_another_key_does_not_verify(cache, ir, fresh):
    runtime.source(ir, "numpy")
    runtime.source(ir, "torch")
    numpy_entry, torch_entry = entry_path(cache, ir), entry_path(cache, ir, "torch")
    numpy_entry.write_bytes(torch_entry.read_bytes())  # a genuine entry, under the wrong name
    assert runtime.source(ir, "numpy") == fresh


CASES = ["truncated", "truncated-header", "empty", "garbage", "non-utf8", "non-utf8-with-valid-mac",
         "header-only", "extra-byte", "syntax-error"]  # fmt: skip


def corrupt_cases(valid: bytes, secret: bytes, key: str):
    non_utf8 = b"\xff\xfe def forward(:\n"
    return {
        "truncated": valid[: len(valid) // 2],
        "truncated-header": valid[:20],
        "empty": b"",
        "garbage": os.urandom(3000),
        "non-utf8": b"\xff\xfe\x80" * 100,
        "non-utf8-with-valid-mac": runtime._MAGIC
        + runtime._mac(secret, key, non_utf8)
        + b"\n"
        + non_utf8,
        "header-only": valid.split(b"\n")[0] + b"\n",
        "extra-byte": valid + b"\n",
        "syntax-error": b"def (:\n",
    }


@pytest.mark.parametrize("case", CASES)
def test_damaged_entry_is_regenerated_silently(cache, ir, fresh, case):
    runtime.source(ir, "numpy")
    path = entry_path(cache, ir)
    secret = (cache / ".hmac-key").read_bytes()
    path.write_bytes(corrupt_cases(path.read_bytes(), secret, runtime._key(ir, "numpy"))[case])
    assert runtime.source(ir, "numpy") == fresh  # warnings are errors: none is issued
    assert verified(cache, path, ir) == fresh
    assert lv.load("rnn_tanh").numpy().module.SOURCE == fresh


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory-link"])
def test_special_file_at_entry_name_is_a_miss(cache, ir, fresh, tmp_path, kind):
    runtime.source(ir, "numpy")
    path = entry_path(cache, ir)
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_bytes(path.read_bytes())  # even a valid entry is not read through a link
    path.unlink()
    if kind == "symlink":
        path.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(path)  # must not block the reader
    else:
        path.symlink_to(tmp_path)
    assert runtime.source(ir, "numpy") == fresh
    assert stat.S_ISREG(os.lstat(path).st_mode) and verified(cache, path, ir) == fresh


def test_entry_owned_by_someone_else_is_a_miss(cache, ir, fresh, monkeypatch):
    runtime.source(ir, "numpy")
    path = entry_path(cache, ir)
    real = os.fstat
    monkeypatch.setattr(runtime.os, "fstat", lambda fd: _owned_by(real(fd), 4242, fd, path))
    calls = []
    generate = runtime.generate
    monkeypatch.setattr(runtime, "generate", lambda *a: calls.append(a) or generate(*a))
    assert runtime.source(ir, "numpy") == fresh and len(calls) == 1


def _owned_by(st, uid, fd, path):
    """``st`` with another owner when ``fd`` is the file at ``path``."""
    try:
        same = os.path.samestat(st, os.stat(path))
    except OSError:
        same = False
    if not same:
        return st
    fields = list(st)
    fields[stat.ST_UID] = uid
    return os.stat_result(fields)


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o707, 0o702, 0o777])
def test_folder_writable_by_others_is_refused(cache, ir, fresh, mode):
    cache.mkdir()
    os.chmod(cache, mode)
    with pytest.warns(CacheWarning, match="writable by group or others") as record:
        assert runtime.source(ir, "numpy") == fresh
    assert len(record) == 1 and str(cache) in str(record[0].message)
    assert list(cache.iterdir()) == []  # nothing written into it, not even the key


def test_folder_readable_by_others_is_accepted(cache, ir, fresh):
    cache.mkdir()
    os.chmod(cache, 0o755)  # as an older version of the tool made it
    assert runtime.source(ir, "numpy") == fresh
    assert verified(cache, entry_path(cache, ir), ir) == fresh


def test_folder_of_another_user_is_refused(cache, ir, fresh, monkeypatch):
    cache.mkdir(mode=0o700)
    monkeypatch.setattr(runtime, "_current_uid", lambda: os.geteuid() + 1)
    with pytest.warns(CacheWarning, match="owned by uid"):
        assert runtime.source(ir, "numpy") == fresh
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(not ROOT, reason="changing a folder's owner needs root")
def test_folder_really_owned_by_another_user_is_refused(cache, ir, fresh):
    cache.mkdir(mode=0o700)
    os.chown(cache, 4242, 4242)
    with pytest.warns(CacheWarning, match="owned by uid 4242"):
        assert runtime.source(ir, "numpy") == fresh
    assert list(cache.iterdir()) == []


def test_symlinked_folder_is_refused(cache, ir, fresh, tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    cache.symlink_to(target)
    with pytest.warns(CacheWarning, match="symbolic link"):
        assert runtime.source(ir, "numpy") == fresh
    assert list(target.iterdir()) == []


def test_folder_that_is_a_file_is_refused(cache, ir, fresh):
    cache.write_text("")
    with pytest.warns(CacheWarning, match="not a folder"):
        assert runtime.source(ir, "numpy") == fresh


def test_folder_that_cannot_be_created(cache, ir, fresh, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(blocker / "sub"))
    with pytest.warns(CacheWarning, match="cannot create"):
        assert runtime.source(ir, "torch") == runtime.source(ir, "torch", use_cache=False)


def test_symlinked_key_is_refused(cache, ir, fresh, tmp_path):
    cache.mkdir(mode=0o700)
    outside = tmp_path / "key"
    outside.write_bytes(b"k" * 32)
    os.chmod(outside, 0o600)
    (cache / ".hmac-key").symlink_to(outside)
    with pytest.warns(CacheWarning, match="symbolic link"):
        assert runtime.source(ir, "numpy") == fresh
    assert not entry_path(cache, ir).exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610])
def test_key_with_wrong_mode_is_refused(cache, ir, fresh, mode):
    runtime.source(ir, "numpy")
    os.chmod(cache / ".hmac-key", mode)
    with pytest.warns(CacheWarning, match=f"mode {mode:04o}"):
        assert runtime.source(ir, "numpy") == fresh


def test_key_that_is_not_a_file_is_refused(cache, ir, fresh):
    (cache / ".hmac-key").mkdir(parents=True)
    os.chmod(cache, 0o700)
    with pytest.warns(CacheWarning, match="not a regular file"):
        assert runtime.source(ir, "numpy") == fresh


@pytest.mark.skipif(not ROOT, reason="changing a file's owner needs root")
def test_key_of_another_user_is_refused(cache, ir, fresh):
    runtime.source(ir, "numpy")
    os.chown(cache / ".hmac-key", 4242, 4242)
    with pytest.warns(CacheWarning, match="owned by uid 4242"):
        assert runtime.source(ir, "numpy") == fresh


def test_damaged_key_is_replaced(cache, ir, fresh):
    runtime.source(ir, "numpy")
    key = cache / ".hmac-key"
    key.write_bytes(b"")
    assert runtime.source(ir, "numpy") == fresh
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(os.lstat(key).st_mode) == 0o600
    assert verified(cache, entry_path(cache, ir), ir) == fresh


def test_key_made_by_another_process_first_is_used(cache, ir):
    runtime.source(ir, "numpy")
    existing = (cache / ".hmac-key").read_bytes()
    fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert runtime._create_secret(fd) == existing  # lost the race: the published key wins
    finally:
        os.close(fd)
    assert sorted(p.name for p in cache.iterdir() if p.name.endswith(".tmp")) == []


def test_unwritable_entry_warns_and_goes_on(cache, ir, fresh, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    runtime.source(ir, "torch")  # key made
    monkeypatch.setattr(runtime, "_write_temp", full)
    with pytest.warns(CacheWarning, match="cannot write .*No space left"):
        assert runtime.source(ir, "numpy") == fresh


def test_directory_at_entry_name_warns_and_goes_on(cache, ir, fresh):
    runtime.source(ir, "numpy")
    path = entry_path(cache, ir)
    path.unlink()
    path.mkdir()
    (path / "x").write_text("")
    with pytest.warns(CacheWarning, match="cannot write"):
        assert runtime.source(ir, "numpy") == fresh
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_warning_is_issued_once_per_process(cache, ir, fresh, tmp_path, monkeypatch):
    cache.mkdir()
    os.chmod(cache, 0o777)
    other = tmp_path / "other"
    other.write_text("")

    def calls():
        for _ in range(3):
            assert runtime.source(ir, "numpy") == fresh
        runtime.source(ir, "torch")
        monkeypatch.setenv("LSTM_VERIFY_CACHE", str(other))  # another reason, same process
        assert runtime.source(ir, "numpy") == fresh

    with pytest.warns(CacheWarning) as record:
        calls()
    assert len([w for w in record if issubclass(w.category, CacheWarning)]) == 1


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch, ir, fresh):
    monkeypatch.setattr(runtime, "_warned", False)
    monkeypatch.delenv("LSTM_VERIFY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "lstm_verify"
    assert runtime.source(ir, "numpy") == fresh
    assert entry_path(tmp_path / "xdg" / "lstm_verify", ir).exists()
    assert not (tmp_path / "home").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG specification
    assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "lstm_verify"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "lstm_verify"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(tmp_path / "explicit"))
    assert runtime.cache_dir() == tmp_path / "explicit"


def test_cache_disabled_writes_nothing(tmp_path, monkeypatch, ir, fresh):
    monkeypatch.setenv("LSTM_VERIFY_CACHE", "0")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() is None
    assert runtime.source(ir, "numpy") == fresh
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def versions(monkeypatch):
    """Make ``runtime._version`` report other versions for some packages."""
    real = runtime._version
    other = {}
    monkeypatch.setattr(runtime, "_version", lambda package: other.get(package) or real(package))
    runtime._versions.cache_clear()
    yield other
    runtime._versions.cache_clear()


@pytest.mark.parametrize("package", ["sympy", "torch", "numpy"])
def test_key_changes_with_package_versions(cache, ir, fresh, versions, package):
    before = runtime._key(ir, "numpy")
    runtime.source(ir, "numpy")
    versions[package] = "0.0.0-other"
    runtime._versions.cache_clear()
    after = runtime._key(ir, "numpy")
    assert after != before
    assert entry_path(cache, ir).name != runtime._entry_name(ir, "numpy", before)
    assert runtime.source(ir, "numpy") == fresh
    assert len(list(cache.glob("*.py"))) == 2  # an entry per key, none served for the other


def test_key_changes_with_python_version_and_generator(ir, monkeypatch):
    before = runtime._key(ir, "numpy")
    monkeypatch.setattr(runtime, "_versions", lambda: (("python", "cpython 9.9.9"),))
    assert runtime._key(ir, "numpy") != before
    monkeypatch.undo()
    monkeypatch.setattr(runtime, "generator_hash", lambda: "0" * 16)
    assert runtime._key(ir, "numpy") != before
    assert runtime._key(ir, "torch") != runtime._key(ir, "numpy")


def test_missing_torch_is_a_version_not_an_error(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert runtime._version("torch") == "absent"


def test_key_does_not_import_torch():
    code = (
        "import sys\n"
        "import lstm_verify as lv\n"
        "from lstm_verify import runtime\n"
        "runtime._key(lv.load('rnn_tanh').ir, 'numpy')\n"
        "print(dict(runtime._versions())['torch'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, imported = out.stdout.split()
    assert imported == "False" and version != ""


def test_entries_and_write_atomic_fsync_before_rename(cache, ir, tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda *a, **k: events.append("replace") or real_replace(*a, **k)
    )
    runtime.source(ir, "numpy")
    assert events[-3:] == ["fsync", "replace", "fsync"]  # file data, rename, folder entry
    events.clear()
    runtime.write_atomic(tmp_path / "out.txt", "text")
    assert events == ["fsync", "replace", "fsync"]
    assert (tmp_path / "out.txt").read_text() == "text"


def test_generator_hash_covers_every_module_the_generator_imports():
    import lstm_verify.codegen  # noqa: F401

    hashed = {p.resolve() for p in runtime._package_sources()}
    package = {
        Path(m.__file__).resolve()
        for name, m in list(sys.modules.items())
        if name.startswith("lstm_verify.") and getattr(m, "__file__", None)
    }
    assert package and package <= hashed
    names = {p.relative_to(Path(runtime.__file__).parent).as_posix() for p in hashed}
    assert {"codegen/emit.py", "codegen/plan.py", "prelude/torch_step.py", "hygiene.py", "derive.py"} <= names


def test_generator_hash_follows_module_content(monkeypatch, tmp_path):
    fake = tmp_path / "lstm_verify"
    fake.mkdir()
    (fake / "codegen.py").write_text("A = 1\n")
    (fake / "hygiene.py").write_text("B = 1\n")
    monkeypatch.setattr(runtime, "__file__", str(fake / "runtime.py"))
    hashes = []
    for text in ("B = 1\n", "B = 2\n"):
        (fake / "hygiene.py").write_text(text)
        runtime.generator_hash.cache_clear()
        hashes.append(runtime.generator_hash())
    runtime.generator_hash.cache_clear()
    assert hashes[0] != hashes[1]
