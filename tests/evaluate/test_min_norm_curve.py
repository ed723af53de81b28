"""Robust accuracy against eps from one minimum-norm run: the formulas, the evaluator's eps_curve, the plot."""

import json

import numpy as np
import pytest

from jaxrobust.cli import _parse_attack_spec
from jaxrobust.data import ArrayDataset
from jaxrobust.evaluate.metrics import clean_correct
from jaxrobust.evaluate.min_norm_curve import min_norms, plot_min_norm_curve, robust_accuracy_at
from jaxrobust.evaluate.robust import RobustEvaluator
from tests.attacks import aa_helpers

EPS = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1e6]


def test_robust_accuracy_at_is_the_fraction_above_eps():
  rng = np.random.default_rng(0)
  r = np.r_[np.zeros(7), np.full(5, np.inf), rng.uniform(0, 1, 38)]
  eps = np.r_[0.0, np.sort(rng.uniform(0, 1, 20)), r[20], 2.0]  # one eps exactly at a norm
  acc = robust_accuracy_at(r, eps)
  np.testing.assert_array_equal(acc, [np.mean(r > e) for e in eps])  # exactly, not approximately
  order = np.argsort(eps, kind="stable")
  assert (np.diff(acc[order]) <= 0).all()  # non-increasing in eps
  assert acc[0] == np.mean(r > 0) == 43 / 50 and acc[-1] == 5 / 50
  np.testing.assert_array_equal(robust_accuracy_at(r, eps[::-1]), acc[::-1])  # any order
  with pytest.raises(ValueError):
    robust_accuracy_at(r, [-0.1])
  with pytest.raises(ValueError):
    robust_accuracy_at(np.r_[r, np.nan], [0.1])


def test_min_norms():
  r = min_norms([True, True, False, False], [True, False, True, False], [0.3, 0.0, 0.2, 0.0])
  np.testing.assert_array_equal(r, [0.3, np.inf, 0.0, 0.0])


@pytest.fixture(scope="module")
def digits_model():
  params, _ = aa_helpers.train_digits("linear")
  x, y = aa_helpers.digits()
  test = ArrayDataset(x[1200:1360], y[1200:1360], 10, "digits")
  return (lambda v, xb: aa_helpers.linear_apply(v, xb)), params, test


@pytest.mark.parametrize("name,norm", [("fmn", "l2"), ("ddn", None)])
def test_evaluator_curve_matches_norms_and_clean_accuracy(digits_model, name, norm):
  apply, v, test = digits_model
  spec = {"name": name, "label": name, "steps": 40, "eps_curve": EPS}
  if norm:
    spec["norm"] = norm
  ev = RobustEvaluator(apply)
  r = ev.evaluate(v, test, [spec], batch_size=64, progress=False)  # 160 points: last batch padded
  c = r["eps_curve"][name]
  assert c["norm"] == "l2" and c["eps"] == EPS and c["n"] == 160
  acc = np.asarray(c["robust_acc"])
  assert acc[0] == r["clean_acc"]
  assert (np.diff(acc) <= 0).all()
  assert acc[-1] == r["robust_acc"][name]  # eps -> inf: the attack's own robust accuracy
  norms = np.asarray(c["norms"])
  np.testing.assert_array_equal(acc, [np.mean(norms > e) for e in EPS])
  # the norms are those of the returned points
  p = ev.points(v, test, [spec], batch_size=64, progress=False, keep_adversarials=True)
  d = np.linalg.norm((p.adversarials[name].astype(np.float64) - test.as_float()).reshape(160, -1), axis=1)
  np.testing.assert_allclose(p.adv_norms[name], d)
  fooled = p.adv_pred[name] != p.labels
  np.testing.assert_array_equal(norms, min_norms(clean_correct(p), fooled, d))
  assert c["broken"] > 0.9 and 0 < c["median_norm"] < np.inf


def test_curve_agrees_with_an_eps_run(digits_model):
  """Robust accuracy of FMN run with eps (points farther than eps returned as x) equals the curve at eps."""
  apply, v, test = digits_model
  ev = RobustEvaluator(apply)
  spec = {"name": "fmn", "label": "c", "norm": "linf", "steps": 30, "eps_curve": [0.05, 0.1]}
  curve = ev.evaluate(v, test, [spec], batch_size=160, progress=False)["eps_curve"]["c"]
  for e, a in zip(curve["eps"], curve["robust_acc"]):
    r = ev.evaluate(v, test, [{"name": "fmn", "label": "e", "norm": "linf", "steps": 30, "eps": e}],
                    batch_size=160, progress=False)
    assert abs(r["robust_acc"]["e"] - a) <= 1 / 160  # a norm within float rounding of eps may land either side


def test_reports_without_eps_curve_are_unchanged(digits_model):
  apply, v, test = digits_model
  ev = RobustEvaluator(apply)
  spec = {"name": "fmn", "label": "f", "norm": "l2", "steps": 10}
  r = ev.evaluate(v, test, [spec], batch_size=160, progress=False)
  assert "eps_curve" not in r
  assert ev.points(v, test, [spec], batch_size=160, progress=False).adv_norms is None


def test_eps_curve_spec_checks(digits_model):
  apply, v, test = digits_model
  ev = RobustEvaluator(apply)
  bad = [({"name": "pgd", "eps": 0.1, "steps": 2, "step_size": 0.05, "eps_curve": [0.1]}, "not a minimum-norm"),
         ({"name": "fmn", "eps": 0.1, "eps_curve": [0.1]}, "leave eps out"),
         ({"name": "fmn", "eps_curve": [-1.0]}, ">= 0"),
         ({"name": "fmn", "eps_curve": "0.1"}, "list")]
  for spec, msg in bad:
    with pytest.raises(ValueError, match=msg):
      ev.evaluate(v, test, [spec], progress=False)


def test_plot_and_json(tmp_path):
  r = np.r_[0.0, 0.1, 0.3, np.inf]
  curves = {"fmn l2": {"norm": "l2", "eps": [0.0, 0.2], "robust_acc": robust_accuracy_at(r, [0.0, 0.2]).tolist(),
                       "norms": r.tolist()},
            "fmn linf": {"norm": "linf", "eps": [0.05], "robust_acc": [0.5], "norms": [0.01, 0.1]}}
  path = plot_min_norm_curve(curves, str(tmp_path / "curve.png"))
  assert (tmp_path / "curve.png").stat().st_size > 1000 and path.endswith("curve.png")
  json.dumps(curves)  # inf norms are written as Infinity, as the evaluator's JSON writer does


def test_cli_spec_keeps_list_values():
  assert _parse_attack_spec("fmn:norm=l2,eps_curve=[0.5,1.0,2],steps=50") == {
      "name": "fmn", "norm": "l2", "eps_curve": [0.5, 1.0, 2], "steps": 50}
  assert _parse_attack_spec("pgd:eps=0.3,steps=20") == {"name": "pgd", "eps": 0.3, "steps": 20}
