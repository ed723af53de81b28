"""Metric plug-ins over per-point outputs, the selection rule, and the evaluator-level spec keys."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from jaxrobust.attacks.pgd import pgd
from jaxrobust.data import ArrayDataset, load_dataset
from jaxrobust.evaluate import metrics as M
from jaxrobust.evaluate.average_precision import APGD_CE, PGD_BCE, APEvaluator, protocol_spec, transfer_spec
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.evaluate.selection import ScoreLog, improves, select_best
from jaxrobust.evaluate.specs import attack_kwargs, spec_label


def _points(**kw):
  base = dict(labels=np.array([1, 0, 1, 0, 1]), clean_pred=np.array([1, 0, 0, 0, 1]),
              clean_score=np.array([2.0, -1.0, -0.5, -3.0, 1.0], np.float32),
              adv_pred={"a": np.array([0, 0, 0, 1, 1]), "b": np.array([1, 1, 0])},
              adv_score={"a": np.array([-1.0, -0.5, -2.0, 0.5, 0.2], np.float32),
                         "b": np.array([1.0, 0.3, -1.0], np.float32)},
              attacks=[], seconds={})
  base.update(kw)
  return M.Points(**base)


def test_accuracy_metrics_from_points():
  p = _points()
  assert M.CleanAccuracy()(p) == {"clean_acc": 0.8}
  r = M.RobustAccuracy()(p)
  # robust: correct clean and adversarially; 'b' saw the first 3 points only
  assert r["robust_acc"] == {"a": pytest.approx(0.4), "b": pytest.approx(1 / 3)}
  assert r["n_attacked"] == {"a": 5, "b": 3} and r["n_worst"] == 3
  assert r["worst_case_acc"] == 0.0  # no point among the first 3 is robust to both
  adv = M.AdversarialAccuracy("robust_acc")(p)["robust_acc"]
  assert adv == {"a": pytest.approx(0.4), "b": pytest.approx(1 / 3)}
  assert M.AdversarialAccuracy()(p)["adversarial_acc"]["a"] == pytest.approx(0.4)


def test_ap_metrics_from_points():
  p = _points()
  ap = M.AveragePrecision()(p)
  assert ap["clean_ap"] == pytest.approx(average_precision_score(p.labels, p.clean_score), abs=1e-12)
  assert ap["robust_ap"]["b"] == pytest.approx(average_precision_score(p.labels[:3], p.adv_score["b"]), abs=1e-12)
  worst = np.where(p.labels[:3] == 1, np.minimum(p.adv_score["a"][:3], p.adv_score["b"]),
                   np.maximum(p.adv_score["a"][:3], p.adv_score["b"]))
  assert M.WorstCaseAP()(p)["worst_case_ap"] == pytest.approx(average_precision_score(p.labels[:3], worst))
  assert M.PositiveRate()(p) == {"n_pos": 3, "positive_rate": 0.6, "inverted_floor_ap": M.inverted_ranking_ap(3, 2)}
  multi = _points(clean_score=None, adv_score=None)
  assert M.AveragePrecision()(multi) == {} and M.WorstCaseAP()(multi) == {}
  with pytest.raises(ValueError, match="score must be one of"):
    M.AveragePrecision("probability")
  with pytest.raises(ValueError, match="writes report entries another metric wrote"):
    M.compute(p, [M.RobustAccuracy(), M.AdversarialAccuracy("robust_acc")])


def test_selection_rule():
  assert improves(0.5, None) and improves(0.6, 0.5)
  assert not improves(0.5, 0.5)  # ties keep the earlier record
  assert not improves(float("nan"), None) and not improves(None, None)
  recs = [{"step": 1, "s": float("nan")}, {"step": 2, "s": 0.1}, {"step": 3, "s": 0.3}, {"step": 4, "s": 0.3}]
  assert select_best(recs, "s")["step"] == 3
  with pytest.raises(ValueError, match="no record has a finite 's'"):
    select_best(recs[:1], "s")


def test_score_log_round_trip(tmp_path):
  log = ScoreLog(str(tmp_path / "scores.jsonl"))
  assert log.records() == []
  log.append({"step": 5, "score": 0.5})
  log.append({"step": 10, "score": 0.7})
  assert [r["step"] for r in log.records()] == [5, 10]
  assert json.loads((tmp_path / "scores.jsonl").read_text().splitlines()[1])["score"] == 0.7
  ScoreLog(str(tmp_path / "scores.jsonl"), write=False).append({"step": 15})
  assert len(log.records()) == 2


def test_spec_keys_are_not_attack_settings():
  src = (lambda v, x: x, {})
  spec = {"name": "pgd", "eps": 0.1, "max_examples": 8, "two_class_logits": True, "source": src}
  assert attack_kwargs(spec) == {"eps": 0.1}
  assert spec_label(spec) == "pgd eps=0.1 max_examples=8 two_class_logits=True"  # no model in a label
  assert protocol_spec({"name": "pgd", "eps": 0.1}) == {"name": "pgd", "label": "pgd eps=0.1", "eps": 0.1,
                                                         "loss": "bce", "init": "normal", "init_scale": 0.001}
  assert protocol_spec(dict(APGD_CE)) == APGD_CE and protocol_spec(dict(PGD_BCE)) == PGD_BCE  # already complete
  old = protocol_spec({"name": "transfer", "eps": 0.1, "steps": 2, "step_size": 0.05,
                       "source_apply": src[0], "source_variables": src[1]})
  assert old["name"] == "pgd" and old["source"] == src and old["label"] == "transfer eps=0.1 step_size=0.05 steps=2"
  with pytest.raises(ValueError, match="needs source_apply and source_variables"):
    protocol_spec({"name": "transfer", "eps": 0.1})
  from jaxrobust.evaluate.checks import is_black_box
  assert is_black_box({"name": "square"}) and is_black_box({"name": "pgd", "source": src})
  assert not is_black_box({"name": "pgd"})


@pytest.fixture(scope="module")
def single_logit_digits():
  test = load_dataset("digits", "test").take(120)
  data = ArrayDataset(test.images, (test.labels == 3).astype(np.int32), 2, "digits3")
  rng = np.random.default_rng(0)
  v = {"w": jnp.asarray(rng.normal(size=(64, 1)), jnp.float32), "b": jnp.zeros(1)}
  apply = lambda vv, xb: xb.reshape(xb.shape[0], -1) @ vv["w"] + vv["b"]  # noqa: E731
  return apply, v, data


def test_ap_protocol_is_the_evaluator_with_registry_specs(single_logit_digits):
  # APEvaluator's scores are RobustEvaluator's per-point scores for the completed registry specs.
  apply, v, data = single_logit_digits
  src = {"w": v["w"][::-1], "b": v["b"]}
  attacks = [dict(PGD_BCE, eps=0.05, step_size=0.02, steps=3), dict(APGD_CE, eps=0.05, n_iter=3),
             transfer_spec(apply, src, eps=0.05, steps=3, step_size=0.02)]
  key = jax.random.PRNGKey(3)
  r = APEvaluator(apply).evaluate(v, data, attacks, batch_size=50, key=key, keep_scores=True)
  p = RobustEvaluator(apply, trace_eps=False).points(v, data, attacks, batch_size=50, key=key, progress=False)
  for s in attacks:
    np.testing.assert_array_equal(r["scores"][s["label"]], p.adv_score[s["label"]])
  assert r["robust_ap"]["PGD-10"] == M.average_precision(data.labels, p.adv_score["PGD-10"])
  assert all("source" not in s for s in r["attacks"])


def test_source_key_crafts_on_the_surrogate(single_logit_digits):
  # A transfer spec's adversarials are the attack run on the source model, scored by the target.
  apply, v, data = single_logit_digits
  src = {"w": -v["w"], "b": v["b"]}
  spec = {"name": "pgd", "label": "t", "eps": 0.05, "steps": 3, "step_size": 0.02, "loss": "bce", "init": "none",
          "source": (apply, src)}
  r = RobustEvaluator(apply).evaluate(v, data, [spec], batch_size=200, progress=False, keep_adversarials=True)
  x, y = jnp.asarray(data.as_float()), jnp.asarray(data.labels)
  direct = pgd(lambda xx: apply(src, xx), x, y, None, eps=0.05, step_size=0.02, steps=3, loss="bce", init="none")
  np.testing.assert_allclose(r["adversarials"]["t"], np.asarray(direct), atol=1e-6)
  assert r["attacks"][0] == {k: val for k, val in spec.items() if k != "source"}


def test_two_class_logits_key(single_logit_digits):
  # APGD-CE on [0, z] of a single-logit model: CE of softmax([0, z]) is BCE of z, so it lowers positives.
  apply, v, data = single_logit_digits
  spec = {"name": "apgd_ce", "label": "a", "eps": 0.05, "n_iter": 3, "best_loss": True, "two_class_logits": True}
  p = RobustEvaluator(apply).points(v, data, [spec], batch_size=64, progress=False)
  move = np.where(data.labels == 1, p.clean_score - p.adv_score["a"], p.adv_score["a"] - p.clean_score)
  assert np.all(move > -1e-5)
  with pytest.raises(ValueError, match="must be a pair"):
    RobustEvaluator(apply).points(v, data, [dict(spec, source=apply)], progress=False)
  with pytest.raises(ValueError, match="needs a single-logit model"):
    APEvaluator(lambda vv, xb: jnp.zeros((xb.shape[0], 3))).points(v, data, [])
