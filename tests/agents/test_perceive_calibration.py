"""The perceive agent's photo constants come from renders: the calibration reads no photo and is reproducible."""

from __future__ import annotations

import builtins
import json
from dataclasses import replace
from pathlib import Path

import pytest

from agents.perceive import PerceiveSimulateAgent
from agents.perceive_calibration import GRID, calibrate, render_set
from agents.perceive_photo import LEGACY, PHOTO_PARAMS_FILE, SHIPPED, PhotoParams, load_photo_params
from cubeworld.cli import main

SMALL_GRID = {"sat_min": (60 / 255, 120 / 255), "val_min": (30 / 255,), "min_area": (0.004,), "rows": (0.6, 1.0),
              "unit": (("width", None), ("pitch", (0.6, 1.2)))}
SHARED_DATA = str(Path(__file__).resolve().parents[3] / "shared" / "data")


def photo_reads(paths):
    """The opened paths that belong to a photo set: its layout (images/, labels.csv; envs.real) or ../shared/data.
    (The lerer style's own wood textures, written to a temp folder and read back by pybullet, are not photos.)"""
    return [p for p in paths if "/images/" in p or p.endswith(("labels.csv", "human_responses.csv"))
            or p.startswith(SHARED_DATA) or "lerer-dev" in p]


@pytest.fixture(scope="module")
def samples():
    return render_set(3, seed=5)


@pytest.fixture
def no_photos(monkeypatch, tmp_path):
    """The photo folder absent (CUBEWORLD_LERER_DIR -> an empty folder) and every file opened recorded."""
    monkeypatch.setenv("CUBEWORLD_LERER_DIR", str(tmp_path / "absent"))
    opened, real_open = [], builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    real_path_open = Path.open

    def path_spy(self, *args, **kwargs):
        opened.append(str(self))
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", path_spy)
    from PIL import Image
    real_image_open = Image.open

    def image_spy(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_image_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", image_spy)
    return opened


def test_command_calibrates_from_renders_alone(no_photos, tmp_path, capsys):
    out = tmp_path / "photo.json"
    assert main(["calibrate-perceive", "--n", "2", "--seed", "3", "--out", str(out)]) == 0
    assert "calibrated on 4 renders" in capsys.readouterr().out
    read = photo_reads(no_photos)
    assert read == [], f"the calibration opened photo-like files: {read}"
    data = json.loads(out.read_text())
    assert len(data["table"]) == 288 and data["recipe"]["seed"] == 3 and data["recipe"]["renders"] == 4
    assert isinstance(load_photo_params(out), PhotoParams)
    # The spy sees photo reads: evaluating on fixture photos is caught by the same check.
    from evaluation import evaluate_real
    from tests.envs.test_real import write_dataset

    evaluate_real(PerceiveSimulateAgent(), write_dataset(tmp_path / "photos"), n_resamples=10)
    assert photo_reads(no_photos)


def test_choice_is_deterministic_and_follows_the_criterion(samples):
    first, again = calibrate(grid=SMALL_GRID, samples=samples), calibrate(grid=SMALL_GRID, samples=samples)
    assert first.to_dict() == again.to_dict()
    table = first.table
    assert len(table) == 8
    best = min(range(len(table)), key=lambda i: (-table[i]["accuracy"], table[i]["offset_error"], i))
    assert table[best]["params"] == first.params.to_dict()
    assert first.accuracy == max(r["accuracy"] for r in table)
    with pytest.raises(ValueError, match="missing or empty: \\['rows'\\]"):
        calibrate(grid={**SMALL_GRID, "rows": ()}, samples=samples)


def test_shipped_constants_are_the_recipes_choice():
    data = json.loads(Path(PHOTO_PARAMS_FILE).read_text())
    recipe = data["recipe"]
    assert recipe["grid"] == json.loads(json.dumps({k: list(v) for k, v in GRID.items()}))
    assert (recipe["n"], recipe["seed"], recipe["renders"]) == (200, 0, 400)
    table = data["table"]
    best = min(range(len(table)), key=lambda i: (-table[i]["accuracy"], table[i]["offset_error"], i))
    assert table[best]["params"] == data["params"] and load_photo_params() == SHIPPED
    assert PerceiveSimulateAgent().photo_params == SHIPPED


def test_only_legacy_constants_declare_photo_tuning():
    shipped = PerceiveSimulateAgent()
    assert shipped.tuned_on is None and not shipped.tuned_on_photos
    legacy = PerceiveSimulateAgent(LEGACY, photo_unit="width")
    assert legacy.tuned_on == "lerer-dev" and len(legacy.tuned_on_photos) == 29 and legacy.photo_unit == "width"
    assert PerceiveSimulateAgent(replace(LEGACY, rows=0.8)).tuned_on is None


@pytest.mark.parametrize(("field", "value", "match"), [
    ("sat_min", 1.5, "sat_min must be in"), ("rows", 0.0, "rows is a fraction"), ("unit", "height", "unit must be"),
    ("pitch_band", (1.2, 0.6), "pitch_band must be"), ("min_area", 0.0, "min_area is a fraction"),
    ("hues", (0.0, 1.0), "hues must give 4"),
])
def test_photo_params_reject_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        replace(LEGACY, **{field: value})
