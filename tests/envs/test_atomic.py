"""Atomic writes: a failure at any point leaves the old file or folder whole and no temporary behind."""

from __future__ import annotations

import json
import os

import pytest

from envs import atomic
from envs.atomic import (
    atomic_directory,
    atomic_path,
    is_temporary,
    save_figure_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


class Boom(RuntimeError):
    pass


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writers_create_parents_and_give_plain_file_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    text = write_text_atomic(tmp_path / "a" / "b.txt", "x\r\ny\n")
    assert text.read_bytes() == b"x\r\ny\n"  # newlines untranslated
    assert text.stat().st_mode & 0o777 == 0o666 & ~umask
    assert write_bytes_atomic(tmp_path / "c.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    path = write_json_atomic(tmp_path / "d.json", {"a": (1, 2)}, indent=None)
    assert path.read_text() == '{"a": [1, 2]}\n'
    assert names(tmp_path) == ["a", "c.bin", "d.json"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half a resu")
        raise Boom
    assert target.read_text() == "old" and names(tmp_path) == ["result.json"]
    with pytest.raises(TypeError):  # not serialisable: nothing is written
        write_json_atomic(target, {"x": object()})
    assert target.read_text() == "old" and names(tmp_path) == ["result.json"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    target.write_text("old\n")

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n" and names(tmp_path) == ["metrics.jsonl"]


def test_the_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_text_atomic(tmp_path / "x.txt", "data")
    assert events == ["fsync", "replace", "fsync"]  # the file, the rename, then its folder


class FakeFigure:
    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, []

    def savefig(self, path, **kwargs):
        self.calls.append(kwargs)
        with open(path, "wb") as f:
            f.write(b"PNG...")
            if self.fail:
                raise Boom


def test_figures_take_the_format_from_the_suffix_and_a_failed_plot_keeps_the_old(tmp_path):
    fig = FakeFigure()
    assert save_figure_atomic(fig, tmp_path / "m.svg", dpi=50).read_bytes() == b"PNG..."
    assert fig.calls == [{"format": "svg", "dpi": 50, "bbox_inches": "tight"}]
    (tmp_path / "m.png").write_bytes(b"old")
    with pytest.raises(Boom):
        save_figure_atomic(FakeFigure(fail=True), tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes() == b"old" and names(tmp_path) == ["m.png", "m.svg"]


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "step-000002"
    target.mkdir()
    (target / "stale.pt").write_text("old")
    with atomic_directory(target) as tmp:
        assert is_temporary(tmp) and tmp.parent == tmp_path and not any(tmp.iterdir())
        (tmp / "adapter.safetensors").write_text("new")
        assert (target / "stale.pt").exists()  # the old folder stays until the new one is complete
    assert names(target) == ["adapter.safetensors"] and names(tmp_path) == ["step-000002"]


def test_a_failure_mid_folder_keeps_the_old_folder_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("half")
        raise Boom
    assert (target / "weights").read_text() == "old" and names(tmp_path) == ["model"]


def test_overwrite_false_keeps_what_another_writer_published(tmp_path):
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "model.safetensors").write_text("theirs")
    with pytest.raises(FileExistsError), atomic_directory(target, overwrite=False) as tmp:
        (tmp / "model.safetensors").write_text("ours")
    assert (target / "model.safetensors").read_text() == "theirs" and names(tmp_path) == ["tiny"]
    with atomic_directory(tmp_path / "new", overwrite=False) as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "new" / "f").read_text() == "x"


def test_temporaries_are_told_by_name():
    assert is_temporary(".tmp-latest-abc") and is_temporary("/x/.old-step-000001-1-2")
    assert not is_temporary("step-000001") and not is_temporary(".hidden")


def test_write_json_atomic_matches_json_dumps(tmp_path):
    data = {"b": [1.5, None], "a": "é"}
    path = write_json_atomic(tmp_path / "r.json", data, indent=1)
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=1) + "\n"
