"""evaluate_real and bias_scores end to end on fixture photos, the CLI, and lerer-dev when present."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents import ConstantAgent, OracleAgent, PerceiveSimulateAgent, RandomAgent
from cubeworld.cli import main
from evaluation import BiasReport, RealEvaluationResult, bias_scores, evaluate, evaluate_real
from evaluation.agreement import cohen_kappa
from tests.envs.test_real import FIXTURE, LERER_DIR, RESPONSES, needs_lerer, write_dataset

TRUTH = np.array([r[3] for r in FIXTURE], float)
HUMANS = np.array([[float(v) if v else np.nan for v in row] for row in RESPONSES])


@pytest.fixture
def data_dir(tmp_path):
    return write_dataset(tmp_path / "photos")


def test_oracle_on_fixture_photos(data_dir):
    r = evaluate_real(OracleAgent(), data_dir, image_size=32, n_resamples=500)
    assert (r.accuracy, r.accuracy_ci95, r.legal_rate, r.kappa_truth) == (1.0, (1.0, 1.0), 1.0, 1.0)
    assert [p.image for p in r.photos] == [row[0] for row in FIXTURE]  # labels.csv order, every photo once
    assert all(p.correct and p.parsed == ("No" if p.falls else "Yes") for p in r.photos)
    # The oracle says the truth, so its kappa against the humans is the humans' kappa against the truth.
    by_hand = np.mean([cohen_kappa(TRUTH, HUMANS[:, j]) for j in range(4)])
    assert r.kappa_humans == pytest.approx(by_hand) and r.human_kappa_truth == pytest.approx(by_hand)
    assert r.kappa_humans_ci95[0] <= r.kappa_humans <= r.kappa_humans_ci95[1]
    assert r.n_participants == 4 and r.bias["t_pref"] == 0.0
    p = np.array([np.nanmean(row) for row in HUMANS])
    assert r.human_accuracy == pytest.approx(np.mean(1 - np.abs(p - TRUTH)), abs=1e-3)
    two = r.by_n_blocks[2]  # photos a and d: both stable, so specificity and T_pref are undefined
    assert (two["photos"], two["accuracy"], two["recall"]) == (2, 1.0, 1.0)
    assert math.isnan(two["specificity"]) and math.isnan(two["t_pref"])
    assert two["human_accuracy"] == pytest.approx(np.mean([1 - p[0], 1 - p[3]]), abs=1e-3)


def test_per_photo_answers_belong_to_their_photos(data_dir):
    class ByName:  # "Yes" for two named photos only: any mix-up of photos and answers shows
        def act(self, observations):
            return [f"<answer>{'Yes' if o['info']['image'] in ('b.png', 'e.png') else 'No'}</answer>"
                    for o in observations]

    r = evaluate_real(ByName(), data_dir, batch_size=4, n_resamples=50)
    assert [p.parsed for p in r.photos] == ["No", "Yes", "No", "No", "Yes", "No"]
    assert [p.correct for p in r.photos] == [False, False, True, False, True, True]
    assert r.accuracy == pytest.approx(0.5)


def test_always_yes_has_t_pref_one_and_chance_kappa(data_dir):
    r = evaluate_real(ConstantAgent("<answer>Yes</answer>"), data_dir, n_resamples=200)
    assert r.accuracy == pytest.approx(0.5) and r.kappa_truth == 0.0
    assert r.bias["recall"] == 1.0 and r.bias["specificity"] == 0.0 and r.bias["t_pref"] == 1.0
    assert r.kappa_humans == pytest.approx(0.0)  # a constant rater has kappa 0 against any varied one
    assert r.by_n_blocks[4]["accuracy"] == 0.0 and r.by_n_blocks[4]["photos"] == 2


def test_illegal_answers_count_wrong_and_leave_kappa_undefined(data_dir):
    r = evaluate_real(ConstantAgent("I cannot tell"), data_dir, n_resamples=50)
    assert r.accuracy == 0.0 and r.legal_rate == 0.0 and r.kappa_truth is None and r.kappa_humans is None
    assert r.bias["n_illegal"] == 6 and math.isnan(r.bias["t_pref"])
    assert "accuracy         0.000" in r.summary() and "kappa vs truth   -" in r.summary()


def test_json_round_trip_is_atomic_and_nan_becomes_null(data_dir, tmp_path):
    r = evaluate_real(RandomAgent(seed=1), data_dir, n_resamples=100)
    path = tmp_path / "out" / "real.json"
    r.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["real.json"]  # no temporary file left
    data = json.loads(path.read_text())
    assert data["n_photos"] == 6 and len(data["photos"]) == 6 and set(data["by_n_blocks"]) == {"2", "3", "4"}
    loaded = RealEvaluationResult.load(path)
    assert loaded.accuracy == r.accuracy and loaded.photos == r.photos and loaded.kappa_humans == r.kappa_humans
    assert sorted(loaded.by_n_blocks) == [2, 3, 4]


def test_without_human_data_the_human_fields_are_empty(tmp_path):
    d = write_dataset(tmp_path / "bare", responses=None, p_falls=False)
    r = evaluate_real(OracleAgent(), d)
    assert r.human_accuracy is None and r.kappa_humans is None and r.n_participants == 0
    assert "human accuracy   -" in r.summary()


def test_bias_scores_on_the_synthetic_binary_task():
    yes = evaluate(ConstantAgent("<answer>Yes</answer>"), "TopBlockStability-v0", 24, seed=0)
    report = bias_scores(yes)
    assert report.overall["t_pref"] == 1.0 and report.overall["recall"] == 1.0
    assert sum(s["n"] for s in report.by_n_blocks.values()) == 24 == sum(s["n"] for s in report.by_difficulty.values())
    assert set(report.by_n_blocks) <= {2, 3, 4} and all(k.startswith("[0.") for k in report.by_difficulty)
    oracle = bias_scores(evaluate(OracleAgent(), "TopBlockStability-v0", 24, seed=0))
    assert oracle.overall["t_pref"] == 0.0 and oracle.overall["accuracy"] == 1.0
    no = bias_scores(evaluate(ConstantAgent("<answer>No</answer>"), "TopBlockStability-v0", 24, seed=0))
    assert no.overall["t_pref"] == pytest.approx(math.tanh(-1.0))
    assert "T_pref" in report.summary() and isinstance(report, BiasReport)
    with pytest.raises(ValueError, match="binary task"):
        bias_scores(evaluate(ConstantAgent("<answer>0</answer>"), "TopBlockXOnly-v0", 2))


def test_bias_scores_read_the_icml_polarity_yes_means_falls():
    # TowerStability-v0 asks "Will the tower fall?": always Yes is always "falls", T_pref tanh(-1).
    yes = bias_scores(evaluate(ConstantAgent("<answer>Yes</answer>"), "TowerStability-v0", 16, seed=0))
    assert yes.yes_means == "falls" and yes.overall["recall"] == 0.0 and yes.overall["specificity"] == 1.0
    assert yes.overall["t_pref"] == pytest.approx(math.tanh(-1.0))
    no = bias_scores(evaluate(ConstantAgent("<answer>No</answer>"), "TowerStability-v0", 16, seed=0))
    assert no.overall["t_pref"] == 1.0 and no.overall["accuracy"] == 1.0 - yes.overall["accuracy"]
    oracle = bias_scores(evaluate(OracleAgent(), "TowerStability-v0", 16, seed=0))
    assert oracle.overall["accuracy"] == 1.0 and oracle.overall["t_pref"] == 0.0
    # Bins over the world's |com_margin|, unbounded above; every episode in one bin.
    assert oracle.difficulty == "|com_margin|" and sum(s["n"] for s in oracle.by_difficulty.values()) == 16
    assert "first answer means falls" in oracle.summary() and oracle.by_level == {}


def test_cli_eval_real_and_bias_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval-real", "--data", str(data_dir), "--agent", "random", "--out", str(out), "--quiet",
                 "--image-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "kappa vs humans" in printed and "n_blocks" in printed and "T_pref" in printed
    assert RealEvaluationResult.load(out).n_photos == 6
    assert main(["eval-real", "--data", str(tmp_path / "missing"), "--agent", "random", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bias_out = tmp_path / "b.json"
    assert main(["bias", "--agent", "oracle", "-n", "8", "--quiet", "--out", str(bias_out)]) == 0
    assert "positive class = stable" in capsys.readouterr().out
    assert json.loads(bias_out.read_text())["overall"]["t_pref"] == 0.0


def test_eval_real_asks_another_prompt_and_refuses_inverted_ones(data_dir, tmp_path, capsys):
    from envs.prompts import LERER, TOP_BLOCK_STABILITY

    class Asked:  # records the prompts it is shown; answers "Yes"
        prompts: set = set()

        def act(self, observations):
            Asked.prompts |= {o["prompt"] for o in observations}
            return ["<answer>Yes</answer>"] * len(observations)

    r = evaluate_real(Asked(), data_dir, n_resamples=20, prompt=TOP_BLOCK_STABILITY)
    assert Asked.prompts == {TOP_BLOCK_STABILITY} and r.prompt == TOP_BLOCK_STABILITY
    assert r.bias["recall"] == 1.0  # "Yes" is still judged "stable"
    assert evaluate_real(Asked(), data_dir, n_resamples=20).prompt is None and LERER in Asked.prompts
    out = tmp_path / "r.json"
    assert main(["eval-real", "--data", str(data_dir), "--agent", "random", "--quiet", "--out", str(out),
                 "--prompt", "top_block_stability"]) == 0
    assert RealEvaluationResult.load(out).prompt == TOP_BLOCK_STABILITY
    capsys.readouterr()
    for task, why in [("tower_stability", "Yes = falls"), ("top_block_x_only", "asks for x answers")]:
        assert main(["eval-real", "--data", str(data_dir), "--agent", "random", "--prompt", task]) == 2
        assert why in capsys.readouterr().err


@needs_lerer
def test_lerer_dev_perceive_agent_and_humans():
    r = evaluate_real(PerceiveSimulateAgent(), LERER_DIR, n_resamples=1000)
    assert r.n_photos == 29 and r.n_participants == 107
    assert r.human_accuracy == pytest.approx(0.725, abs=1e-3)
    # Measured once, out of sample (constants chosen on renders): 18 of 29 at 256 pixels (the legacy,
    # photo-developed constants also score 18/29 there, in-sample).
    assert r.accuracy == pytest.approx(18 / 29) and r.in_sample_note is None
    assert r.kappa_humans_ci95[0] <= r.kappa_humans <= r.kappa_humans_ci95[1]
    assert 0.3 < r.human_human_kappa < 0.5 and r.kappa_truth < r.human_kappa_truth
