"""Transfer (black-box) protocol and ensemble helpers."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import assert_valid, images, labels, mlp_apply, mlp_params  # noqa: E402

from jaxrobust.attacks.ensemble import attack_ensemble_members, ensemble_logits_fn, member_keys  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402
from jaxrobust.attacks.transfer import accuracy, transfer_attack, transfer_report  # noqa: E402

B, K, M = 8, 5, 3
X = images(0, B)
Y = labels(0, B, K)
KEY = jax.random.key(0)
MEMBERS = [mlp_params(s, 12, 16, K) for s in range(M)]
STACKED = jax.tree.map(lambda *a: jnp.stack(a), *MEMBERS)


def _attack(logits_fn, x, y, key):
  return pgd(logits_fn, x, y, key, eps=0.1, step_size=0.03, steps=2)


def test_transfer_never_queries_the_target_and_reports():
  calls = []

  def target(v):
    calls.append(1)
    return mlp_apply(MEMBERS[1], v)

  source = lambda v: mlp_apply(MEMBERS[0], v)
  a = transfer_attack(source, X, Y, KEY, _attack)
  assert not calls
  np.testing.assert_array_equal(a, _attack(source, X, Y, KEY))
  rep = transfer_report(source, {"m1": target, "m0": source}, X, Y, KEY, "pgd",
                        {"eps": 0.1, "step_size": 0.03, "steps": 2})
  assert rep["target_adv"]["m0"] == rep["source_adv"] <= rep["source_clean"]
  assert rep["target_adv"]["m1"] == pytest.approx(float(accuracy(target, a, Y)))
  assert 0.0 <= rep["target_clean"]["m1"] <= 1.0
  with pytest.raises(ValueError, match="config"):
    transfer_attack(source, X, Y, KEY, _attack, {"eps": 0.1})


def test_vmapped_members_equal_a_loop():
  out = jax.jit(lambda p, k: attack_ensemble_members(mlp_apply, p, X, Y, k, _attack))(STACKED, KEY)
  assert out.shape == (M,) + X.shape
  keys = member_keys(KEY, M)
  single = jax.jit(lambda p, k: _attack(lambda v: mlp_apply(p, v), X, Y, k))
  for m in range(M):
    one = single(MEMBERS[m], keys[m])
    np.testing.assert_allclose(out[m], one, atol=1e-6)
    assert_valid(out[m], X, 0.1)


def test_ensemble_logits_modes():
  zs = np.stack([np.asarray(mlp_apply(p, X)) for p in MEMBERS])
  np.testing.assert_allclose(ensemble_logits_fn(mlp_apply, STACKED)(X), zs.mean(0), rtol=1e-5, atol=1e-6)
  probs = np.asarray(jax.nn.softmax(ensemble_logits_fn(mlp_apply, STACKED, "mean_probs")(X)))
  np.testing.assert_allclose(probs, np.asarray(jax.nn.softmax(zs, -1)).mean(0), rtol=1e-5, atol=1e-6)
  single = lambda p, v: mlp_apply(p, v)[:, :1]  # single-logit heads: average the sigmoids
  z1 = np.asarray(ensemble_logits_fn(single, STACKED, "mean_probs")(X))
  np.testing.assert_allclose(jax.nn.sigmoid(z1), np.asarray(jax.nn.sigmoid(zs[:, :, :1])).mean(0), rtol=1e-5)
  with pytest.raises(ValueError, match="ensemble mode"):
    ensemble_logits_fn(mlp_apply, STACKED, "vote")


def test_attacking_the_whole_ensemble_lowers_its_accuracy():
  f = ensemble_logits_fn(mlp_apply, STACKED, "mean_probs")
  y = jnp.argmax(f(X), -1).astype(jnp.int32)  # start from 100% clean accuracy
  a = jax.jit(lambda x: pgd(f, x, y, KEY, eps=0.3, step_size=0.1, steps=5))(X)
  assert_valid(a, X, 0.3)
  assert float(accuracy(f, a, y)) < 1.0
