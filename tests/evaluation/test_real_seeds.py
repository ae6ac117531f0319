"""eval-real results pooled over training seeds: the statistics by hand, the grouping, the CLI."""

from __future__ import annotations

import csv

import pytest

from agents import ConstantAgent, OracleAgent
from cubeworld.cli import main
from evaluation import evaluate_real
from evaluation.real_seeds import format_real_seed_rows, real_seed_rows, result_name
from tests.envs.test_real import FIXTURE, RESPONSES, write_dataset


class _Answers:
    """Answers the fixture photos by name: ``{image: "Yes" | "No"}``."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def act(self, observations):
        return [f"<answer>{self.answers[o['info']['image']]}</answer>" for o in observations]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("photos"))


def _truth() -> dict[str, str]:
    return {row[0]: ("No" if row[3] else "Yes") for row in FIXTURE}


def test_result_name_strips_the_prefix_and_suffix():
    assert result_name("runs/x/real-ppo-rand-s0.json") == "ppo-rand-s0"
    assert result_name("base.json") == "base"


def test_seeds_pool_by_condition_with_mean_min_max_and_agreement(data_dir):
    truth = _truth()
    one_wrong = {**truth, FIXTURE[0][0]: "No" if truth[FIXTURE[0][0]] == "Yes" else "Yes"}
    results = {
        "cnn-s0": evaluate_real(OracleAgent(), data_dir, n_resamples=50),
        "cnn-s1": evaluate_real(_Answers(one_wrong), data_dir, n_resamples=50),
        "yes": evaluate_real(ConstantAgent("<answer>Yes</answer>"), data_dir, n_resamples=50),
    }
    rows = {r["condition"]: r for r in real_seed_rows(results)}
    assert list(rows) == ["cnn", "yes"]
    n = len(FIXTURE)
    cnn = rows["cnn"]
    assert cnn["n_seeds"] == 2 and cnn["legal_rate"] == 1.0
    assert cnn["accuracy"] == pytest.approx((1.0 + (n - 1) / n) / 2)
    assert (cnn["accuracy_min"], cnn["accuracy_max"]) == (pytest.approx((n - 1) / n), 1.0)
    assert cnn["seeds_agree"] == pytest.approx((n - 1) / n)  # the two seeds differ on one photo
    falls = sum(row[3] for row in FIXTURE)
    assert cnn["majority_accuracy"] == pytest.approx(max(falls, n - falls) / n)
    assert cnn["seeds_above_majority"] == 2
    k0, k1 = results["cnn-s0"].kappa_humans, results["cnn-s1"].kappa_humans
    assert cnn["kappa_humans"] == pytest.approx((k0 + k1) / 2)
    assert (cnn["kappa_humans_min"], cnn["kappa_humans_max"]) == (min(k0, k1), max(k0, k1))
    yes = rows["yes"]
    assert yes["n_seeds"] == 1 and yes["t_pref"] == 1.0 and yes["seeds_above_majority"] == 0
    table = format_real_seed_rows(list(rows.values()))
    assert "| cnn | 2 | 1.000 |" in table and "| yes | 1 | 1.000 | 0.500 |" in table


def test_results_of_different_photo_sets_are_not_pooled(data_dir, tmp_path):
    other = write_dataset(tmp_path / "other", rows=FIXTURE[:3], responses=RESPONSES[:3])
    results = {"a-s0": evaluate_real(OracleAgent(), data_dir, n_resamples=20),
               "a-s1": evaluate_real(OracleAgent(), other, n_resamples=20)}
    with pytest.raises(ValueError, match="'a'.*different photos"):
        real_seed_rows(results)


def test_cli_real_seeds(data_dir, tmp_path, capsys):
    for seed in (0, 1):
        out = tmp_path / f"real-rand-s{seed}.json"
        assert main(["eval-real", "--data", str(data_dir), "--agent", "random", "--seed", str(seed), "--quiet",
                     "--out", str(out)]) == 0
    capsys.readouterr()
    files = [str(tmp_path / f"real-rand-s{s}.json") for s in (0, 1)]
    assert main(["real-seeds", *files, "--out", str(tmp_path / "pooled.csv")]) == 0
    assert "| rand | 2 |" in capsys.readouterr().out
    with open(tmp_path / "pooled.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["condition"] for r in rows] == ["rand"] and rows[0]["n_seeds"] == "2"
    assert main(["real-seeds", str(tmp_path / "real-missing.json")]) == 2
    assert "no result file" in capsys.readouterr().err
    assert main(["real-seeds", files[0], files[0]]) == 2
    assert "two results named 'rand-s0'" in capsys.readouterr().err
