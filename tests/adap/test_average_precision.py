"""AP metric (sklearn parity, ties, the inverted-ranking floor), robust-AP evaluation, model selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from jaxrobust.data.binary import one_vs_all
from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.evaluate.average_precision import (APGD_CE, PGD_BCE, APEvaluator, average_precision,
                                                  inverted_ranking_ap, select_best_epoch, transfer_spec)

try:
  from tests.adap.adap_helpers import h
except ImportError:
  from adap_helpers import h


@pytest.mark.parametrize("seed", range(5))
def test_ap_equals_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = 500
  y = (rng.uniform(size=n) < 0.15).astype(int)
  s = rng.integers(0, 20, n) / 20.0  # heavy ties
  np.testing.assert_allclose(average_precision(y, s), average_precision_score(y, s), rtol=1e-12)
  s = rng.standard_normal(n).astype(np.float32)
  np.testing.assert_allclose(average_precision(y, s), average_precision_score(y, s), rtol=1e-12)
  assert np.isnan(average_precision(np.zeros(5), np.arange(5)))


def test_inverted_floor_and_random_ranking():
  np.testing.assert_allclose(inverted_ranking_ap(1000, 9000), 0.05181, atol=5e-6)
  np.testing.assert_allclose(inverted_ranking_ap(500, 9500), 0.02548, atol=5e-6)
  y = np.r_[np.ones(1000), np.zeros(9000)]
  s = np.r_[np.zeros(1000), np.ones(9000)] + 1e-6 * np.random.default_rng(0).standard_normal(10000)
  np.testing.assert_allclose(average_precision(y, s), inverted_ranking_ap(1000, 9000), rtol=1e-12)
  rng = np.random.default_rng(1)
  aps = [average_precision(y, rng.uniform(size=10000)) for _ in range(5)]
  assert abs(np.mean(aps) - 0.1) < 0.01


def _tiny_model_and_data():
  x, y10 = h.digits(200)
  ds = one_vs_all(ArrayDataset(images=(x * 255).round().astype(np.uint8), labels=y10, num_classes=10,
                               name="digits"), 3)
  model = h.TinyMLP(head="single_logit")
  variables = model.init(jax.random.key(0), jnp.asarray(x[:2]))
  apply = lambda v, xx: model.apply(v, xx, train=False)
  return ds, apply, variables


def test_evaluator_scores_attacks_and_reports():
  ds, apply, v = _tiny_model_and_data()
  ev = APEvaluator(apply)
  attacks = [dict(PGD_BCE, eps=0.1, step_size=0.03), dict(APGD_CE, eps=0.1, n_iter=5),
             transfer_spec(apply, v, eps=0.1, steps=5, step_size=0.03)]
  r = ev.evaluate(v, ds, attacks, batch_size=64, keep_scores=True)
  sc = r["scores"]
  z = np.asarray(apply(v, jnp.asarray(ds.as_float())))[:, 0]
  np.testing.assert_allclose(sc["clean"], z, rtol=1e-5, atol=1e-6)  # padded last batch: every point once
  assert r["n"] == 200 and r["n_pos"] == int(ds.labels.sum())
  np.testing.assert_allclose(r["clean_ap"], average_precision_score(ds.labels, z), rtol=1e-6)
  for label in ("PGD-10", "APGD-CE-10", "transfer PGD-20"):
    assert r["robust_ap"][label] < r["clean_ap"]
    # every attack pushes positives down and negatives up (per-point, independent)
    move = np.where(ds.labels == 1, z - sc[label], sc[label] - z)
    assert np.mean(move > -1e-5) > 0.95
  assert r["worst_case_ap"] <= min(r["robust_ap"].values()) + 1e-12
  r_sig = ev.evaluate(v, ds, [], batch_size=64, score="sigmoid")
  np.testing.assert_allclose(r_sig["clean_ap"], average_precision_score(ds.labels, jax.nn.sigmoid(z)), rtol=1e-6)


def test_select_best_epoch():
  recs = [{"epoch": 1, "val_robust_ap": 0.2, "val_clean_ap": 0.9}, {"epoch": 2, "val_robust_ap": 0.3},
          {"epoch": 3, "val_robust_ap": 0.3}, {"epoch": 4, "val_robust_ap": float("nan")}]
  assert select_best_epoch(recs)["epoch"] == 2  # first best wins (strict >)
  assert select_best_epoch(recs, "val_clean_ap")["epoch"] == 1
  with pytest.raises(ValueError):
    select_best_epoch([{"epoch": 1}])
