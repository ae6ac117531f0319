"""Kappa, human accuracy and T_pref against hand-computed contingency tables (table-driven)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from evaluation.agreement import (
    _binary_kappa,
    accuracy_by_group,
    accuracy_with_ci,
    bias_by_group,
    bias_score,
    cohen_kappa,
    difficulty_bins,
    human_accuracy,
    kappa_vs_participants,
    mean_kappa_bootstrap_ci,
    mean_kappa_vs_participants,
    mean_pairwise_kappa,
    offset_difficulty,
    t_pref,
    verdicts,
)


def raters(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Two raters' verdicts with the given 2x2 table: n10 = a says falls (1), b says stable (0)."""
    a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    return np.array(a, float), np.array(b, float)


# (n11, n10, n01, n00) -> kappa, worked by hand from p_o and p_e = pa*pb + (1-pa)(1-pb).
KAPPA_TABLE = [
    ((20, 5, 10, 15), 0.4),              # p_o .7, pa .5, pb .6, p_e .5
    ((45, 15, 25, 15), 0.06 / 0.46),     # p_o .6, pa .6, pb .7, p_e .54
    ((10, 0, 0, 10), 1.0),               # perfect agreement
    ((0, 5, 5, 0), -1.0),                # perfect disagreement, balanced
    ((0, 3, 0, 0), 0.0),                 # a always falls, b always stable: p_o = p_e = 0
    ((4, 1, 0, 0), 0.0),                 # b always falls: p_e = pa = p_o
    ((5, 0, 0, 0), math.nan),            # both always falls: p_e = 1, undefined
]


@pytest.mark.parametrize("table, expected", KAPPA_TABLE)
def test_cohen_kappa_against_hand_computed_tables(table, expected):
    a, b = raters(*table)
    got = cohen_kappa(a, b)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)
        assert cohen_kappa(b, a) == pytest.approx(expected, abs=1e-12)  # symmetric
        # the vectorised formula of the bootstrap agrees
        assert _binary_kappa(a[None], b[None, :, None])[0, 0] == pytest.approx(expected, abs=1e-12)


def test_nan_verdicts_are_left_out_pairwise():
    a, b = raters(20, 5, 10, 15)
    a_more = np.concatenate([a, [np.nan, 1.0]])
    b_more = np.concatenate([b, [0.0, np.nan]])
    assert cohen_kappa(a_more, b_more) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa([np.nan, 1], [0, np.nan]))


def test_mean_over_participants_and_the_vectorised_kappa_match_sklearn():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 30)
    h = np.where(rng.random((30, 12)) < 0.75, truth[:, None], 1 - truth[:, None]).astype(float)
    h[rng.random(h.shape) < 0.1] = np.nan
    agent = np.where(rng.random(30) < 0.7, truth, 1 - truth).astype(float)
    agent[[2, 9]] = np.nan
    ref = []
    for j in range(12):
        keep = ~np.isnan(agent) & ~np.isnan(h[:, j])
        ref.append(cohen_kappa_score(agent[keep].astype(int), h[keep, j].astype(int)))
    np.testing.assert_allclose(kappa_vs_participants(agent, h), ref, atol=1e-12)
    np.testing.assert_allclose(_binary_kappa(agent[None], h[None])[0], ref, atol=1e-12)
    assert mean_kappa_vs_participants(agent, h) == pytest.approx(np.mean(ref))


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_photos():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 15)
    h = np.where(rng.random((15, 5)) < 0.8, truth[:, None], 1 - truth[:, None]).astype(float)
    agent = np.where(rng.random(15) < 0.7, truth, 1 - truth).astype(float)
    # Reference: the same draws, each statistic from sklearn's kappa.
    idx = np.random.default_rng(11).integers(0, 15, size=(200, 15))
    stats = []
    for row in idx:
        k = [cohen_kappa(agent[row], h[row, j]) for j in range(5)]
        if np.isfinite(k).any():
            stats.append(np.nanmean(k))
    low, high = mean_kappa_bootstrap_ci(agent, h, n_resamples=200, seed=11)
    assert (low, high) == pytest.approx((np.percentile(stats, 2.5), np.percentile(stats, 97.5)), abs=1e-12)
    assert low < mean_kappa_vs_participants(agent, h) < high
    assert mean_kappa_bootstrap_ci(agent, h, n_resamples=200, seed=11) == (low, high)


def test_bootstrap_of_perfect_agreement_is_degenerate_and_bad_input_is_named():
    v = np.array([0, 1, 0, 1, 1, 0], float)
    assert mean_kappa_bootstrap_ci(v, np.stack([v, v], 1), n_resamples=300) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one row per photo"):
        mean_kappa_bootstrap_ci(v, np.ones((5, 2)))
    with pytest.raises(ValueError, match="n_resamples"):
        mean_kappa_bootstrap_ci(v, np.stack([v, v], 1), n_resamples=0)
    with pytest.raises(ValueError, match=r"1 \(falls\), 0 \(stable\) or nan"):
        cohen_kappa([0, 2], [0, 1])
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([0, 1], [0, 1, 1])


def test_pairwise_kappa_is_the_mean_over_pairs():
    a, b = raters(20, 5, 10, 15)          # kappa(a, b) = 0.4
    c = a.copy()                           # kappa(a, c) = 1, kappa(b, c) = 0.4
    assert mean_pairwise_kappa(np.stack([a, b, c], 1)) == pytest.approx((0.4 + 1 + 0.4) / 3)
    assert math.isnan(mean_pairwise_kappa(a[:, None]))


@pytest.mark.parametrize("p_falls, truth, expected", [
    ([0.9, 0.2, 0.5], [1, 0, 1], (0.9 + 0.8 + 0.5) / 3),
    ([0.0, 1.0], [0, 1], 1.0),
    ([1.0, 0.0], [0, 1], 0.0),
])
def test_human_accuracy(p_falls, truth, expected):
    assert human_accuracy(p_falls, truth) == pytest.approx(expected)


def test_accuracy_with_ci_and_by_group():
    acc, (low, high) = accuracy_with_ci([1, 0, 1, 1], seed=0)
    assert acc == 0.75 and 0.0 <= low < 0.75 < high <= 1.0
    assert accuracy_with_ci([1, 1, 1]) == (1.0, (1.0, 1.0))
    assert accuracy_by_group([1, 0, 1, 1, 0], [3, 2, 2, 3, 4]) == {2: (0.5, 2), 3: (1.0, 2), 4: (0.0, 1)}


# (recall, specificity) -> T_pref = tanh((recall - specificity) / specificity), positive = stable.
T_PREF_TABLE = [
    ((0.5, 0.5), 0.0),
    ((0.9, 0.6), math.tanh(0.5)),
    ((0.3, 0.6), math.tanh(-0.5)),
    ((0.0, 1.0), math.tanh(-1.0)),   # always "falls": the floor, -0.762
    ((1.0, 0.0), 1.0),               # always "stable": +inf ratio, limit 1
    ((0.2, 0.0), 1.0),
    ((0.0, 0.0), math.nan),          # 0 / 0
    ((math.nan, 0.5), math.nan),     # a class without legal answers
]


@pytest.mark.parametrize("rates, expected", T_PREF_TABLE)
def test_t_pref_table(rates, expected):
    got = t_pref(*rates)
    assert math.isnan(got) if math.isnan(expected) else got == pytest.approx(expected, abs=1e-12)


def test_bias_score_from_a_hand_built_contingency_table():
    # 10 stable: 8 said stable, 1 said falls, 1 illegal; 10 falling: 4 said falls, 6 said stable.
    truth = [0] * 10 + [1] * 10
    said = [0] * 8 + [1] + [np.nan] + [1] * 4 + [0] * 6
    s = bias_score(truth, said)
    assert (s.n, s.n_stable, s.n_falls, s.n_illegal) == (20, 10, 10, 1)
    assert s.recall == pytest.approx(8 / 9) and s.specificity == pytest.approx(0.4)
    assert s.t_pref == pytest.approx(math.tanh((8 / 9 - 0.4) / 0.4))
    assert s.accuracy == pytest.approx(12 / 20)
    only_stable = bias_score([0, 0], [0, 1])
    assert only_stable.recall == 0.5 and math.isnan(only_stable.specificity) and math.isnan(only_stable.t_pref)


def test_bias_by_group_splits_episodes():
    truth = [0, 1, 0, 1]
    said = [0, 0, 0, 1]
    groups = bias_by_group(truth, said, [2, 2, 3, 3])
    assert groups[2].t_pref == 1.0 and groups[2].specificity == 0.0       # recall 1, spec 0
    assert groups[3].t_pref == 0.0 and groups[3].accuracy == 1.0
    with pytest.raises(ValueError, match="one per episode"):
        bias_by_group(truth, said, [2, 2])


def test_verdicts_code_answers():
    np.testing.assert_array_equal(verdicts(["No", "Yes", None, 5, "yes"]), [1, 0, np.nan, np.nan, np.nan])


def test_difficulty_and_bins():
    d = offset_difficulty([0.5, -0.45, 0.05, -0.95, 0.8])
    np.testing.assert_allclose(d, [0.0, 0.05, 0.45, 0.45, 0.3])
    assert difficulty_bins([0.0, 0.099, 0.1, 0.3, 0.5]) == [
        "[0.00, 0.10)", "[0.00, 0.10)", "[0.10, 0.20)", "[0.30, 0.50]", "[0.30, 0.50]"]
    with pytest.raises(ValueError, match="widen edges"):
        difficulty_bins([0.6])
    with pytest.raises(ValueError, match="increasing"):
        difficulty_bins([0.1], edges=(0.2, 0.1))


@pytest.mark.parametrize("labels, yes_means, answers, expected", [
    (("Yes", "No"), "stable", ["Yes", "No", None, "True"], [0.0, 1.0, np.nan, np.nan]),
    (("Yes", "No"), "falls", ["Yes", "No", None], [1.0, 0.0, np.nan]),
    (("True", "False"), "stable", ["True", "False", "Yes"], [0.0, 1.0, np.nan]),
])
def test_verdicts_in_both_polarities(labels, yes_means, answers, expected):
    np.testing.assert_array_equal(verdicts(answers, labels, yes_means), expected)


def test_verdicts_reject_an_unknown_polarity():
    with pytest.raises(ValueError, match="yes_means"):
        verdicts(["Yes"], yes_means="tall")
