"""``cubeworld export-dataset``: writes a loadable dataset; bad input is one error line (exit 2)."""

from __future__ import annotations

import datasets

from cubeworld.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("cubeworld ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def test_export_dataset_writes_the_seeds_it_names(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["export-dataset", "--env", "TopBlockXOnly-v0", "-n", "2", "--seed", "3", "--out", str(out),
                 "--image-size", "32"]) == 0
    assert "seeds 3..4" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(out))
    assert ds["seed"] == [3, 4] and ds["env_id"] == ["TopBlockXOnly-v0"] * 2 and ds[0]["image"].size == (32, 32)


def test_export_dataset_with_an_unknown_env(tmp_path, capsys):
    assert main(["export-dataset", "--env", "TopBlockXonly-v0", "-n", "2", "--out", str(tmp_path / "ds")]) == 2
    line = _error_line(capsys)
    assert line.startswith("cubeworld export-dataset: error: unknown env id") and "'TopBlockXOnly-v0'" in line


def test_export_dataset_onto_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "note.txt").write_text("x")
    assert main(["export-dataset", "--env", "TopBlockXOnly-v0", "-n", "1", "--out", str(tmp_path)]) == 2
    assert "choose a new output folder" in _error_line(capsys)


def test_export_dataset_with_no_rows(tmp_path, capsys):
    assert main(["export-dataset", "--env", "TopBlockXOnly-v0", "-n", "0", "--out", str(tmp_path / "ds")]) == 2
    assert "n (rows) must be an int >= 1" in _error_line(capsys)
