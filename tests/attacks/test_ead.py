"""EAD (Chen et al. 2018): the soft threshold, only adversarial points or the input are returned, the EN and L1
decision rules, eps, batch independence."""

import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import assert_valid, images, jit_attack, labels, mlp_apply, mlp_params  # noqa: E402

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.ead import ead, ead_search, shrink  # noqa: E402

B, K = 8, 5
MLP = mlp_params(1, 12, 16, K)
CFG = dict(max_iterations=30, binary_search_steps=5, initial_const=0.1)


def _pred(p, x):
  return np.asarray(jnp.argmax(mlp_apply(p, x), -1))


def _l1(a, b):
  return np.abs(np.asarray(a) - np.asarray(b)).reshape(a.shape[0], -1).sum(1)


def test_shrink_is_the_box_constrained_soft_threshold():
  x = jnp.asarray([0.5, 0.5, 0.5, 0.0, 1.0])
  u = jnp.asarray([0.8, 0.52, 0.1, -0.5, 1.7])
  np.testing.assert_allclose(np.asarray(shrink(u, x, 0.1)), [0.7, 0.5, 0.2, 0.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("rule", ["L1", "EN"])
@pytest.mark.parametrize("warm_start", [False, True])
def test_only_adversarial_points_or_the_input(rule, warm_start):
  x, y = images(0, B), labels(0, B, K)
  res = jit_attack(ead_search, mlp_apply, decision_rule=rule, warm_start=warm_start, **CFG)(MLP, x, y, None)
  ok = np.asarray(res.success)
  wrong = _pred(MLP, res.x_adv) != np.asarray(y)
  np.testing.assert_array_equal(wrong, ok)
  np.testing.assert_array_equal(np.asarray(res.x_adv)[~ok], np.asarray(x)[~ok])
  assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
  np.testing.assert_allclose(np.asarray(res.l1)[ok], _l1(res.x_adv, x)[ok], rtol=1e-5)
  assert np.all(np.isinf(np.asarray(res.l1)[~ok]))
  assert ok.mean() >= 0.75


def test_decision_rules_pick_from_the_same_iterates():
  """The rule only chooses which adversarial iterate is kept (the iterates and the search are the same), so
  the L1 rule's L1 is <= the EN rule's and the EN rule's elastic-net distance is <= the L1 rule's."""
  x, y = images(1, B), labels(1, B, K)
  beta = 1e-3
  r1 = jit_attack(ead_search, mlp_apply, decision_rule="L1", **CFG)(MLP, x, y, None)
  ren = jit_attack(ead_search, mlp_apply, decision_rule="EN", **CFG)(MLP, x, y, None)
  np.testing.assert_array_equal(np.asarray(r1.success), np.asarray(ren.success))
  ok = np.asarray(r1.success)
  assert np.all(np.asarray(r1.l1)[ok] <= np.asarray(ren.l1)[ok] + 1e-6)
  en = lambda r: (np.asarray(r.x_adv - x).reshape(B, -1) ** 2).sum(1) + beta * _l1(r.x_adv, x)
  assert np.all(en(ren)[ok] <= en(r1)[ok] + 1e-6)
  np.testing.assert_allclose(np.asarray(ren.dist)[ok], en(ren)[ok], rtol=1e-4)


def test_ista_and_batch_abort_also_return_valid_points():
  x, y = images(2, B), labels(2, B, K)
  for cfg in (dict(fista=False), dict(abort_early="batch"), dict(abort_early=None)):
    res = jit_attack(ead_search, mlp_apply, **dict(CFG, **cfg))(MLP, x, y, None)
    ok = np.asarray(res.success)
    np.testing.assert_array_equal(_pred(MLP, res.x_adv) != np.asarray(y), ok)
    np.testing.assert_array_equal(np.asarray(res.x_adv)[~ok], np.asarray(x)[~ok])


def test_eps_keeps_only_points_in_the_l1_ball():
  x, y = images(3, B), labels(3, B, K)
  res = jit_attack(ead_search, mlp_apply, **CFG)(MLP, x, y, None)
  eps = float(np.median(np.asarray(res.l1)[np.isfinite(np.asarray(res.l1))]))
  xa = jit_attack(ead, mlp_apply, **CFG)(MLP, x, y, None, eps=eps)
  assert np.all(_l1(xa, x) <= eps + 1e-5)
  assert float(xa.min()) >= 0 and float(xa.max()) <= 1
  keep = np.asarray(res.l1) <= eps
  np.testing.assert_allclose(np.asarray(xa)[keep], np.asarray(res.x_adv)[keep])
  np.testing.assert_array_equal(np.asarray(xa)[~keep], np.asarray(x)[~keep])


def test_batch_equals_its_halves():
  """abort_early='example' (the default) keeps the examples independent."""
  x, y = images(4, B), labels(4, B, K)
  run = jit_attack(ead_search, mlp_apply, **CFG)
  full = run(MLP, x, y, None)
  halves = [run(MLP, x[s], y[s], None) for s in (slice(0, B // 2), slice(B // 2, B))]
  np.testing.assert_allclose(np.asarray(full.x_adv), np.concatenate([np.asarray(h.x_adv) for h in halves]),
                             atol=1e-6)


def test_registry():
  for name in ("ead", "ead_l1", "ead_en"):
    info = registry.attack_info(name)
    assert info.norms == ("l1",) and info.box == "white"
  assert "decision_rule" not in registry.attack_parameters("ead_l1")
  with pytest.raises(ValueError, match="decision_rule"):
    ead(lambda v: mlp_apply(MLP, v), images(0, 2), labels(0, 2, K), None, decision_rule="L2")
