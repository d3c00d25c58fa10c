"""files.write_file: exclusive creation without --force, only regular files replaced with it."""

from __future__ import annotations

import errno
import os
import socket
import stat

import pytest

from lstm_verify import files
from lstm_verify.errors import LstmVerifyError
from lstm_verify.files import OutputError, write_file


def _umask():
    old = os.umask(0o022)
    os.umask(old)
    return old


def _no_temp_left(folder):
    assert not [p.name for p in folder.iterdir() if files.TEMP_MARK in p.name]


def test_new_file_is_written_with_ordinary_permissions(tmp_path):
    out = write_file(tmp_path / "a.py", "x = 1\n")
    assert out.read_text() == "x = 1\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    write_file(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    _no_temp_left(tmp_path)


def test_existing_file_is_kept_without_force(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("mine")
    with pytest.raises(OutputError, match="exists; pass --force") as err:
        write_file(path, "theirs")
    assert isinstance(err.value, LstmVerifyError) and isinstance(err.value, OSError)
    assert path.read_text() == "mine"
    _no_temp_left(tmp_path)


def _racing(monkeypatch, make):
    """Run ``make(path)`` after the content is written and before it is put in place."""
    original = files._create_temp

    def create_then_race(path, data, mode):
        tmp = original(path, data, mode)
        make(path)
        return tmp

    monkeypatch.setattr(files, "_create_temp", create_then_race)


def test_file_created_during_generation_is_not_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "a.py"
    _racing(monkeypatch, lambda p: p.write_text("created meanwhile"))
    with pytest.raises(OutputError, match="created by something else while writing"):
        write_file(path, "generated")
    assert path.read_text() == "created meanwhile"
    _no_temp_left(tmp_path)


def test_without_hard_links_creation_is_still_exclusive(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_link)
    write_file(tmp_path / "a.py", "generated")
    assert (tmp_path / "a.py").read_text() == "generated"
    _racing(monkeypatch, lambda p: p.write_text("created meanwhile"))
    with pytest.raises(OutputError, match="created by something else"):
        write_file(tmp_path / "b.py", "generated")
    assert (tmp_path / "b.py").read_text() == "created meanwhile"
    _no_temp_left(tmp_path)


def test_force_replaces_a_regular_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_file(path, "new", force=True)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    _no_temp_left(tmp_path)


def test_force_refuses_a_symbolic_link(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    link = tmp_path / "a.py"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="is a symbolic link; only a regular file"):
        write_file(link, "generated", force=True)
    assert link.is_symlink() and target.read_text() == "precious"
    dangling = tmp_path / "b.py"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link"):
        write_file(dangling, "generated", force=True)
    assert not (tmp_path / "nowhere").exists()
    _no_temp_left(tmp_path)


def test_force_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "a.py"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="is a FIFO"):
        write_file(fifo, "generated", force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _no_temp_left(tmp_path)


def test_force_refuses_a_directory(tmp_path):
    folder = tmp_path / "a.py"
    folder.mkdir()
    (folder / "inside").write_text("kept")
    with pytest.raises(OutputError, match="is a directory"):
        write_file(folder, "generated", force=True)
    assert (folder / "inside").read_text() == "kept"


def test_force_refuses_a_socket(tmp_path):
    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        with pytest.raises(OutputError, match="is a socket"):
            write_file(path, "generated", force=True)
    finally:
        sock.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_force_refuses_a_device_node():
    with pytest.raises(OutputError, match="is a character device"):
        write_file("/dev/null", "generated", force=True)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_link_put_at_the_path_while_writing_is_not_followed(tmp_path, monkeypatch):
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    path = tmp_path / "a.py"
    path.write_text("old")

    def swap_for_link(p):
        p.unlink()
        p.symlink_to(target)

    _racing(monkeypatch, swap_for_link)
    with pytest.raises(OutputError, match="became a symbolic link while writing"):
        write_file(path, "generated", force=True)
    assert target.read_text() == "precious" and path.is_symlink()
    _no_temp_left(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_file(tmp_path / "no" / "a.py", "x")


def test_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "_write_fd", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_file(tmp_path / "a.py", "x")
    assert list(tmp_path.iterdir()) == []


def test_kind_of(tmp_path):
    assert files.kind_of(tmp_path / "none") is None
    (tmp_path / "f").write_text("")
    assert files.kind_of(tmp_path / "f") == "a regular file"
    assert files.kind_of(tmp_path) == "a directory"
