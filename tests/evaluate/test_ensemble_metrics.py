"""Ensemble-chapter metrics (spec cce_tamoo.md A1, A7, A10, B9, B12): TA-MOO task success (A-i, A-Avg,
A-All), CCE transferability (a^(i,j), T, S_ab, nT, a_single; Table 6's arithmetic), Lemma 1(ii), the
entropy-detection ROC-AUC against a brute-force pairwise count, and the heat-map."""

import numpy as np
import pytest

from jaxrobust.evaluate.ensemble_metrics import (ens_achieved, ensemble_entropy, ensemble_prediction,
                                                 entropy_detection_auc, eot_achieved, plot_transferability,
                                                 roc_auc, task_success, transferability_matrix,
                                                 transferability_report, transferability_T, uni_achieved)


def random_probs(rng, shape, k):
  return rng.dirichlet(np.ones(k), size=shape)


# -------------------------------------------------------------------------------------------
# Task success (B9, B12)
# -------------------------------------------------------------------------------------------

def test_task_success_by_hand():
  achieved = np.array([[1, 1, 0, 1],
                       [1, 0, 0, 1],
                       [1, 1, 1, 1]], bool)
  r = task_success(achieved)
  assert r["A_i"] == [75.0, 50.0, 100.0]
  assert r["A_avg"] == pytest.approx(75.0)
  assert r["A_all"] == 50.0  # samples 0 and 3
  assert (r["m"], r["n"]) == (3, 4)


def test_task_success_ordering_property():
  """A_all <= min_i A_i <= A_avg <= max_i A_i on random matrices of every density."""
  rng = np.random.default_rng(0)
  for _ in range(300):
    m, n = rng.integers(1, 8), rng.integers(1, 40)
    achieved = rng.random((m, n)) < rng.random()
    r = task_success(achieved)
    a_i = np.array(r["A_i"])
    tol = 1e-9  # the mean of equal floats may move in the last bit
    assert r["A_all"] <= a_i.min() + tol
    assert a_i.min() <= r["A_avg"] + tol
    assert r["A_avg"] <= a_i.max() + tol


def test_task_success_one_task_all_equals_avg():
  rng = np.random.default_rng(1)
  for _ in range(50):
    achieved = rng.random((1, rng.integers(1, 50))) < 0.5
    r = task_success(achieved)
    assert r["A_all"] == r["A_avg"] == r["A_i"][0]
  assert task_success(np.array([True, False]))["A_all"] == 50.0  # a vector is one task


def test_task_success_empty_and_bad_shapes():
  r = task_success(np.zeros((2, 0), bool))
  assert np.isnan(r["A_all"]) and np.isnan(r["A_avg"]) and r["n"] == 0
  with pytest.raises(ValueError):
    task_success(np.zeros((2, 3, 4), bool))


def test_ens_untargeted_and_targeted():
  labels = np.array([0, 1, 2])
  member_pred = np.array([[0, 2, 1],
                          [1, 1, 2]])
  np.testing.assert_array_equal(ens_achieved(member_pred, labels), [[0, 1, 1], [1, 0, 0]])
  targets = np.array([1, 2, 0])
  # Targeted: achieved means the target was reached (not merely the label left; spec B11.4).
  np.testing.assert_array_equal(ens_achieved(member_pred, labels, targets=targets), [[0, 1, 0], [1, 0, 0]])
  # Per-member targets.
  per_member = np.array([[0, 2, 1], [0, 0, 0]])
  np.testing.assert_array_equal(ens_achieved(member_pred, labels, targets=per_member), [[1, 1, 1], [0, 0, 0]])
  r = task_success(ens_achieved(member_pred, labels, targets=targets))
  assert r["A_i"] == pytest.approx([100 / 3, 100 / 3]) and r["A_all"] == 0.0


def test_eot_goals():
  labels = np.array([0, 1, 2, 3])
  clean_pred = np.array([0, 2, 2, 1])  # wrong on samples 1 and 3
  pred = np.array([[0, 2, 1, 1],
                   [3, 1, 2, 1]])
  thesis = eot_achieved(pred, clean_pred=clean_pred)  # default goal: the clean prediction
  code = eot_achieved(pred, goal="label", labels=labels)
  np.testing.assert_array_equal(thesis, [[0, 0, 1, 0], [1, 1, 0, 0]])
  np.testing.assert_array_equal(code, [[0, 1, 1, 1], [1, 0, 0, 1]])
  np.testing.assert_array_equal(eot_achieved(pred, goal="target", targets=np.array([3, 3, 1, 1])),
                                [[0, 0, 1, 1], [1, 0, 0, 1]])
  with pytest.raises(ValueError, match="needs labels"):
    eot_achieved(pred, goal="label", clean_pred=clean_pred)
  with pytest.raises(ValueError, match="goal must be"):
    eot_achieved(pred, goal="other", labels=labels)


def test_uni_groups_of_k():
  # n = 6, K = 3: groups (0, 1, 2) and (3, 4, 5); task i = position i in the group.
  labels = np.array([0, 0, 0, 1, 1, 1])
  pred = np.array([1, 1, 1, 1, 0, 0])
  achieved = uni_achieved(pred, 3, goal="label", labels=labels)
  np.testing.assert_array_equal(achieved, [[1, 0], [1, 1], [1, 1]])
  r = task_success(achieved)
  assert r["A_i"] == [50.0, 100.0, 100.0]
  assert r["A_all"] == 50.0  # only group 0 is fooled everywhere by its one delta
  assert r["n"] == 2
  with pytest.raises(ValueError, match="groups"):
    uni_achieved(pred, 4, goal="label", labels=labels)
  # The thesis's goal against the clean prediction.
  np.testing.assert_array_equal(uni_achieved(pred, 2, clean_pred=pred), np.zeros((2, 3), bool))


# -------------------------------------------------------------------------------------------
# Transferability (A7, A10)
# -------------------------------------------------------------------------------------------

def test_transferability_matrix_and_T_by_hand():
  labels = np.array([0, 1, 2, 3])
  preds = np.array([[[0, 0, 0, 0], [0, 1, 2, 0]],    # on x_a^1: member 1 25%, member 2 75%
                    [[0, 1, 0, 3], [1, 1, 0, 0]]])   # on x_a^2: member 1 75%, member 2 25%
  a = transferability_matrix(preds, labels)
  np.testing.assert_allclose(a, [[25, 75], [75, 25]])
  assert transferability_T(a) == pytest.approx(75 - 25 + 75 - 25)


def test_T_generalisation_reduces_to_paper_and_is_mean_gap():
  rng = np.random.default_rng(2)
  a = rng.uniform(0, 100, (2, 2))
  assert transferability_T(a) == pytest.approx(a[0, 1] - a[0, 0] + a[1, 0] - a[1, 1])
  a3 = rng.uniform(0, 100, (3, 3))
  gaps = [a3[i, j] - a3[i, i] for i in range(3) for j in range(3) if i != j]
  assert transferability_T(a3) == pytest.approx(2 * np.mean(gaps))
  with pytest.raises(ValueError):
    transferability_T(np.ones((1, 1)))


def test_subsets_sum_to_100_and_a_single_nonnegative():
  rng = np.random.default_rng(3)
  for trial in range(40):
    n_members = 2 if trial % 2 else int(rng.integers(3, 5))
    n, k = int(rng.integers(1, 60)), int(rng.integers(2, 5))
    labels = rng.integers(0, k, n)
    preds = rng.integers(0, k, (n_members, n_members, n))
    probs = random_probs(rng, (n_members, n), k)
    if trial % 3 == 0:  # coarse probabilities: many ties inside and between members
      probs = np.round(probs * 2) / 2 + 1e-12
    r = transferability_report(preds, probs, labels)
    assert sum(r["correct_members"]) == pytest.approx(100.0)
    assert r["a_single"] >= 0.0  # Lemma 1(ii): every member right => the ensemble right
    assert r["nT"] == pytest.approx(r["nT_exact"] - r["en_right_in_S00"])
    if n_members == 2:
      assert r["S11"] + r["S10"] + r["S01"] + r["S00"] == pytest.approx(100.0)
      assert [r["S00"], r["S10"] + r["S01"], r["S11"]] == pytest.approx(r["correct_members"])


def test_lemma_1_ii_same_argmax_carries_the_average():
  """argmax p^1 = argmax p^2 = y  =>  argmax (p^1 + p^2) / 2 = y (and for N members)."""
  rng = np.random.default_rng(4)
  for n_members in (2, 3, 5):
    k, n = 7, 2000
    probs = random_probs(rng, (n_members, n), k)
    y = rng.integers(0, k, n)
    # Move each member's largest entry to class y: every member predicts y.
    top = probs.argmax(-1)
    rows = np.arange(n)
    for m in range(n_members):
      p = probs[m]
      p[rows, top[m]], p[rows, y] = p[rows, y].copy(), p[rows, top[m]].copy()
    assert (probs.argmax(-1) == y).all()
    np.testing.assert_array_equal(ensemble_prediction(probs), y)
    np.testing.assert_array_equal(ensemble_prediction(probs.astype(np.float32)), y)


def _table6_inputs(row, n=1000):
  """Predictions of N = 2 members on x_a^1, x_a^2 and x_a^en that realise one row of Table 6.

  y = 0, K = 2. On x_a^en: S11 both right; in S10 / S01 the right member is confident and carries the
  ensemble on the first (a_en_en - S11) of them, the wrong member is confident on the rest; S00 both
  wrong (so nT, written for an ensemble wrong on S00, is the fooled-but-not-transferable share).
  Counts are the table's % rounded to n; a rounding excess goes off S00. On x_a^i: a11, a22 as printed
  and a12 = a21 = (T + a11 + a22) / 2 (the table gives T, not a12 and a21)."""
  counts = {s: int(round(row[s] * n / 100)) for s in ("S11", "S10", "S01", "S00")}
  counts["S00"] += n - sum(counts.values())
  en_right_split = int(round(row["a_en_en"] * n / 100)) - counts["S11"]
  probs = []
  strong, weak = [0.9, 0.1], [0.4, 0.6]  # right-and-sure / wrong-and-unsure (mean: right)
  unsure, sure_wrong = [0.6, 0.4], [0.1, 0.9]  # right-and-unsure / wrong-and-sure (mean: wrong)
  probs += [([0.8, 0.2], [0.8, 0.2])] * counts["S11"]
  split = [("S10", True), ("S01", False)]
  carried = 0
  for s, first_right in split:
    for _ in range(counts[s]):
      carry = carried < en_right_split
      carried += carry
      right, wrong = (strong, weak) if carry else (unsure, sure_wrong)
      probs.append((right, wrong) if first_right else (wrong, right))
  probs += [([0.2, 0.8], [0.3, 0.7])] * counts["S00"]
  member_probs = np.array(probs).transpose(1, 0, 2)  # (2, n, 2)
  labels = np.zeros(n, np.int64)

  def correct_then_wrong(pct):
    c = int(round(pct * n / 100))
    return np.r_[np.zeros(c, np.int64), np.ones(n - c, np.int64)]

  off = (row["T"] + row["a11"] + row["a22"]) / 2
  preds = np.stack([np.stack([correct_then_wrong(row["a11"]), correct_then_wrong(off)]),
                    np.stack([correct_then_wrong(off), correct_then_wrong(row["a22"])])])
  return preds, member_probs, labels


# Table 6 (CIFAR10 CNN, N = 2, PGD k = 20), spec A8. All four rows are internally consistent:
# nT = 100 - a(en,en) - S00 and a_single = a(en,en) - S11 to the printed digit, and S11 + S10 + S01 + S00
# = 100.0 (ADV-EN, ADP) or 100.1 (CCE-RM, CCE-Base: rounding of the four printed values). T cannot be
# checked against the table: a12 and a21 are not printed; T + a11 + a22 = a12 + a21 <= 200 holds in every row.
TABLE6 = {
    "ADV-EN": dict(a_en_en=40.7, a11=31.1, a22=33.2, S11=24.0, S01=17.0, S10=13.0, S00=46.0, T=65.5, nT=13.3,
                   a_single=16.7),
    "ADP": dict(a_en_en=42.9, a11=31.0, a22=33.1, S11=25.7, S01=13.1, S10=11.7, S00=49.5, T=59.3, nT=7.6,
                a_single=17.2),
    "CCE-RM": dict(a_en_en=45.5, a11=41.7, a22=41.4, S11=39.9, S01=5.2, S10=5.5, S00=49.5, T=33.7, nT=5.0,
                   a_single=5.6),
    "CCE-Base": dict(a_en_en=43.3, a11=40.3, a22=40.5, S11=36.1, S01=6.5, S10=7.2, S00=50.3, T=36.1, nT=6.4,
                     a_single=7.2),
}


@pytest.mark.parametrize("model", sorted(TABLE6))
def test_table6_arithmetic(model):
  row = TABLE6[model]
  assert 100.0 - row["a_en_en"] - row["S00"] == pytest.approx(row["nT"], abs=0.15)
  assert row["a_en_en"] - row["S11"] == pytest.approx(row["a_single"], abs=0.15)
  assert row["S11"] + row["S10"] + row["S01"] + row["S00"] == pytest.approx(100.0, abs=0.15)
  assert row["T"] + row["a11"] + row["a22"] <= 200.0

  r = transferability_report(*_table6_inputs(row))
  for column in ("a_en_en", "a11", "a22", "S11", "S10", "S01", "S00", "T", "nT", "a_single"):
    assert r[column] == pytest.approx(row[column], abs=0.15), column
  assert r["en_right_in_S00"] == 0.0 and r["nT"] == pytest.approx(r["nT_exact"])


def test_nT_counts_an_ensemble_right_on_S00_against_itself():
  """Both members wrong, the ensemble right: nT = 100 - a_en_en - S00 goes below the fooled share."""
  probs = np.array([[[0.4, 0.6, 0.0]], [[0.4, 0.0, 0.6]]])  # mean (0.4, 0.3, 0.3): right
  preds = np.zeros((2, 2, 1), np.int64)
  r = transferability_report(preds, probs, np.array([0]))
  assert (r["S00"], r["a_en_en"], r["nT"], r["nT_exact"], r["en_right_in_S00"]) == (100.0, 100.0, -100.0, 0.0,
                                                                                  100.0)


def test_report_shapes_checked():
  with pytest.raises(ValueError):
    transferability_report(np.zeros((2, 2, 3), np.int64), np.ones((2, 4, 2)) / 2, np.zeros(3, np.int64))
  with pytest.raises(ValueError):
    transferability_matrix(np.zeros((2, 3, 3), np.int64), np.zeros(3, np.int64))


# -------------------------------------------------------------------------------------------
# Entropy detection (A7)
# -------------------------------------------------------------------------------------------

def brute_auc(neg, pos):
  return np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])


def test_entropy_detection_separated_and_identical():
  rng = np.random.default_rng(5)
  confident = np.tile([0.97, 0.01, 0.01, 0.01], (20, 1))
  unsure = random_probs(rng, 30, 4) * 0.2 + 0.2  # entropy near log 4, above the confident one's
  assert entropy_detection_auc(confident, unsure) == 1.0
  assert entropy_detection_auc(unsure, confident) == 0.0
  same = random_probs(rng, 25, 4)
  assert entropy_detection_auc(same, same) == 0.5
  assert entropy_detection_auc(confident, confident) == 0.5


def test_auc_equals_pairwise_count_with_ties():
  rng = np.random.default_rng(6)
  for _ in range(30):
    neg = rng.integers(0, 5, rng.integers(1, 40)).astype(float)
    pos = rng.integers(0, 5, rng.integers(1, 40)).astype(float)
    assert roc_auc(neg, pos) == pytest.approx(brute_auc(neg, pos), abs=1e-12)
  # Through the entropy: probabilities from a few rows tie exactly.
  palette = random_probs(rng, 4, 3)
  clean, adv = palette[rng.integers(0, 4, 50)], palette[rng.integers(0, 4, 35)]
  expected = brute_auc(ensemble_entropy(clean), ensemble_entropy(adv))
  assert entropy_detection_auc(clean, adv) == pytest.approx(expected, abs=1e-12)
  assert np.isnan(roc_auc([], [1.0]))


def test_ensemble_entropy():
  np.testing.assert_allclose(ensemble_entropy(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])),
                             [0.0, np.log(3)], atol=1e-12)
  members = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # (N, n, K): the mean is uniform
  np.testing.assert_allclose(ensemble_entropy(members), [np.log(2)])


# -------------------------------------------------------------------------------------------
# The plot
# -------------------------------------------------------------------------------------------

def test_plot_writes_a_png(tmp_path):
  preds, probs, labels = _table6_inputs(TABLE6["CCE-RM"], n=200)
  report = transferability_report(preds, probs, labels)
  path = plot_transferability(report, str(tmp_path / "sub" / "transfer.png"))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  path3 = plot_transferability(np.arange(9.0).reshape(3, 3) * 10, str(tmp_path / "t3.png"), title="N = 3")
  assert (tmp_path / "t3.png").stat().st_size > 0 and path3.endswith("t3.png")
