"""Leave-one-out accuracy over candidate settings, and the in-sample note of tuned agents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import PerceiveSimulateAgent
from cubeworld.cli import main
from evaluation import bootstrap_ci, evaluate_real, leave_one_out_accuracy, leave_one_out_choices
from evaluation.in_sample import in_sample_note, photo_fingerprint
from tests.envs.test_real import FIXTURE, LERER_DIR, needs_lerer, write_dataset

FALLS = {name: bool(falls) for name, _, _, falls in FIXTURE}


class RightOn:
    """Answers the photos in ``right`` correctly and every other photo wrongly (reads only the file name)."""

    def __init__(self, right):
        self.right = set(right)

    def act(self, observations):
        names = [o["info"]["image"] for o in observations]
        # "Yes" is "it stands" in the Lerer question, so the right answer to a falling tower is "No".
        return [f"<answer>{'No' if FALLS[n] == (n in self.right) else 'Yes'}</answer>" for n in names]


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "photos")


@pytest.mark.parametrize(("correct", "choices", "loo"), [
    # A wrong on one photo only: every fold keeps A, so LOO = A's accuracy.
    ({"A": [0, 1, 1, 1], "B": [1, 0, 0, 0]}, ["A"] * 4, [0, 1, 1, 1]),
    # Two equally good settings: leaving a photo out favours the one that got it wrong, LOO = 0.
    ({"A": [1, 1, 0, 0], "B": [0, 0, 1, 1]}, ["B", "B", "A", "A"], [0, 0, 0, 0]),
    # A tie on the other photos goes to the first candidate (fold 0: 1 vs 1).
    ({"A": [1, 1, 0], "B": [1, 0, 1]}, ["A", "B", "A"], [1, 0, 0]),
    ({"only": [1, 0, 1]}, ["only"] * 3, [1, 0, 1]),
])
def test_choices_table(correct, choices, loo):
    got_choices, got_loo = leave_one_out_choices(correct)
    assert got_choices == choices and got_loo.tolist() == [bool(x) for x in loo]


@pytest.mark.parametrize(("correct", "match"), [
    ({}, "at least one candidate"), ({"A": [1]}, "at least 2 photos"), ({"A": [1, 0], "B": [1]}, "lengths"),
])
def test_choices_reject_bad_input(correct, match):
    with pytest.raises(ValueError, match=match):
        leave_one_out_choices(correct)


def test_leave_one_out_on_fixture_photos(data_dir, tmp_path):
    # B (listed first, so it is the "shipped" one) is right on c.png only; A on every other photo.
    others = [n for n in FALLS if n != "c.png"]
    r = leave_one_out_accuracy({"B": RightOn(["c.png"]), "A": RightOn(others)}, data_dir, image_size=32)
    assert r.candidate_accuracy == {"B": pytest.approx(1 / 6), "A": pytest.approx(5 / 6)}
    assert r.default == "B" and r.in_sample_accuracy == pytest.approx(1 / 6)
    assert r.images == [row[0] for row in FIXTURE] and r.choices == ["A"] * 6 and r.choice_counts() == {"B": 0, "A": 6}
    assert r.correct == [n != "c.png" for n in r.images] and r.accuracy == pytest.approx(5 / 6)
    assert r.accuracy_ci95 == bootstrap_ci(np.array(r.correct, float), seed=0)
    assert "leave-one-out accuracy 0.833" in r.summary() and "B: accuracy 0.167 (default)" in r.summary()
    r.save(tmp_path / "loo.json")
    assert json.loads((tmp_path / "loo.json").read_text())["choices"] == ["A"] * 6
    with pytest.raises(ValueError, match="at least one candidate"):
        leave_one_out_accuracy({}, data_dir)


def test_perceive_declares_its_candidates_and_tuning_set():
    # The legacy (photo-developed) constants keep their candidates; the shipped ones chose nothing on photos.
    candidates = PerceiveSimulateAgent.photo_candidates()
    assert list(candidates) == ["legacy photo_unit=pitch", "legacy photo_unit=width"]  # legacy's first: the tie-break
    assert [a.photo_unit for a in candidates.values()] == ["pitch", "width"]
    assert all(a.tuned_on == "lerer-dev" for a in candidates.values())
    assert PerceiveSimulateAgent().tuned_on is None
    with pytest.raises(ValueError, match="photo_unit must be one of"):
        PerceiveSimulateAgent(photo_unit="height")


def test_in_sample_note_reads_the_files_not_the_folder_name(data_dir):
    class Tuned(RightOn):
        tuned_on = "fixture-set"

    tuned = Tuned([])
    paths = sorted((data_dir / "images").iterdir())
    tuned.tuned_on_photos = {photo_fingerprint(p) for p in paths[:3]}
    note, hits = in_sample_note(tuned, paths)
    assert hits == 3 and note.startswith("in-sample: this agent's photo constants were chosen on fixture-set")
    assert "3 of the 6 photos" in note
    r = evaluate_real(tuned, data_dir, n_resamples=10)
    assert (r.in_sample_note, r.in_sample_photos) == (note, 3) and note in r.summary()
    tuned.tuned_on_photos = {"0" * 16}  # other photos: out of sample, no note
    assert in_sample_note(tuned, paths) == (None, 0)
    del tuned.tuned_on_photos  # no fingerprints: the note is given, the overlap unknown
    note, hits = in_sample_note(tuned, paths)
    assert hits is None and "in-sample" in note
    assert in_sample_note(RightOn([]), paths) == (None, 0)
    assert evaluate_real(PerceiveSimulateAgent(), data_dir, n_resamples=10).in_sample_note is None


def test_cli_leave_one_out_needs_declared_candidates(data_dir, capsys):
    assert main(["eval-real", "--data", str(data_dir), "--agent", "random", "--quiet", "--leave-one-out"]) == 2
    assert "photo_candidates()" in capsys.readouterr().err


@needs_lerer
def test_lerer_dev_figure_is_out_of_sample_beside_the_legacy_leave_one_out(tmp_path, capsys):
    out = tmp_path / "real.json"
    assert main(["eval-real", "--data", str(LERER_DIR), "--agent", "perceive", "--quiet", "--leave-one-out",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # The shipped constants were chosen on renders: no in-sample note on the Lerer photos.
    assert "in-sample: this agent" not in printed
    assert json.loads(out.read_text())["in_sample_note"] is None
    loo = json.loads(out.with_suffix(".loo.json").read_text())
    # The legacy, photo-developed constants: pitch 18/29, width 16/29; every fold keeps pitch.
    assert loo["candidate_accuracy"] == {"legacy photo_unit=pitch": pytest.approx(18 / 29),
                                         "legacy photo_unit=width": pytest.approx(16 / 29)}
    assert loo["choices"] == ["legacy photo_unit=pitch"] * 29 and loo["accuracy"] == pytest.approx(18 / 29)
    assert "leave-one-out accuracy 0.621" in printed
    legacy = evaluate_real(PerceiveSimulateAgent.photo_candidates()["legacy photo_unit=pitch"], LERER_DIR,
                           n_resamples=10)
    assert legacy.in_sample_photos == 29 and "chosen on lerer-dev (29 of the 29 photos" in legacy.in_sample_note
