"""`medscale.atomic`: the one way medscale writes a file atomically."""

from __future__ import annotations

import json
import os
import stat

import pytest

from medscale import atomic
from medscale.atomic import atomic_open, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_replace_the_file_whole_and_leave_nothing_else(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    assert write_json_atomic(target, {"a": [1, 2]}, indent=1) == target
    assert json.loads(target.read_text()) == {"a": [1, 2]} and target.read_text().endswith("\n")
    write_text_atomic(target, "µV")
    assert target.read_bytes() == "µV".encode()
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="half way"), atomic_open(target, "w") as f:
        f.write("new, half")
        raise RuntimeError("half way")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_data_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_bytes_atomic(tmp_path / "x", b"1")
    assert calls == ["file", "replace", "dir"]


def test_permissions_follow_the_umask_and_bad_modes_are_refused(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o644  # not mkstemp's 0600
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_open(tmp_path / "y", "a"):
        pass
