"""DeepFool (Moosavi-Dezfooli et al. 2016): the closed form on a linear model, only adversarial points or the
input are returned, top-k candidates, eps, batch independence."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, images, jit_attack, labels, linear_apply, linear_params,  # noqa: E402
                            mlp_apply, mlp_params)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.deepfool import candidate_classes, deepfool, deepfool_search  # noqa: E402

B, K = 8, 5
MLP = mlp_params(1, 12, 16, K)


def _pred(apply, p, x):
  return np.asarray(jnp.argmax(apply(p, x), -1))


def _mid_images(seed, b=B):
  """Pixels near 0.5, so a small step never meets the box."""
  return jnp.asarray(0.5 + 0.05 * np.random.RandomState(seed).uniform(-1, 1, (b, 2, 2, 3)), jnp.float32)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_linear_model_closed_form(norm):
  """One step lands at (1 + overshoot) min_k |f_y - f_k| / ||w_y - w_k||_q (q = 2 for L2, 1 for Linf)."""
  params = linear_params(3, 12, K, scale=1.0)
  x = _mid_images(0)
  y = jnp.asarray(_pred(linear_apply, params, x), jnp.int32)  # correctly classified
  res = jit_attack(deepfool_search, linear_apply, norm=norm)(params, x, y, None)
  z, w = np.asarray(linear_apply(params, x), np.float64), np.asarray(params["w"], np.float64)
  expected = []
  for i, yi in enumerate(np.asarray(y)):
    q = 2 if norm == "l2" else 1
    expected.append(min(abs(z[i, yi] - z[i, k]) / np.linalg.norm(w[:, yi] - w[:, k], q) for k in range(K) if k != yi))
  expected = 1.02 * np.asarray(expected)
  assert np.all(np.asarray(res.success)) and np.all(np.asarray(res.steps) == 1)
  np.testing.assert_allclose(np.asarray(res.dist), expected, rtol=1e-4)
  assert np.all(_pred(linear_apply, params, res.x_adv) != np.asarray(y))


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("steps", [1, 2, 50])
def test_only_adversarial_points_or_the_input(norm, steps):
  """x_adv is misclassified (success) or equals x (failure); never a correct point labelled adversarial."""
  x, y = images(0, B), labels(0, B, K)
  res = jit_attack(deepfool_search, mlp_apply, norm=norm, steps=steps)(MLP, x, y, None)
  wrong = _pred(mlp_apply, MLP, res.x_adv) != np.asarray(y)
  ok = np.asarray(res.success)
  np.testing.assert_array_equal(wrong, ok)
  np.testing.assert_array_equal(np.asarray(res.x_adv)[~ok], np.asarray(x)[~ok])
  assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
  clean_wrong = _pred(mlp_apply, MLP, x) != np.asarray(y)
  np.testing.assert_array_equal(np.asarray(res.x_adv)[clean_wrong], np.asarray(x)[clean_wrong])
  if steps == 50:  # one example stalls on a boundary the box clip keeps it from crossing (torchattacks too)
    assert ok.mean() >= 0.75


def test_candidates():
  """The top-m classes by clean logit, y excluded; m = K - 1 gives the same attack as all classes."""
  z = jnp.asarray([[0.0, 3.0, 1.0, 2.0], [5.0, 4.0, -1.0, 0.0]])
  y = jnp.asarray([1, 0], jnp.int32)
  np.testing.assert_array_equal(candidate_classes(z, y, 2), [[3, 2], [1, 3]])
  np.testing.assert_array_equal(candidate_classes(z, y, None), [[0, 2, 3], [1, 2, 3]])
  x, yy = images(1, B), labels(1, B, K)
  a = jit_attack(deepfool_search, mlp_apply)(MLP, x, yy, None)
  b = jit_attack(deepfool_search, mlp_apply, candidates=K - 1)(MLP, x, yy, None)
  np.testing.assert_allclose(np.asarray(a.x_adv), np.asarray(b.x_adv), atol=1e-6)
  c = jit_attack(deepfool_search, mlp_apply, candidates=1)(MLP, x, yy, None)  # only the runner-up
  wrong = _pred(mlp_apply, MLP, c.x_adv) != np.asarray(yy)
  np.testing.assert_array_equal(wrong, np.asarray(c.success))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_eps_keeps_only_points_in_the_ball(norm):
  x, y = images(2, B), labels(2, B, K)
  res = jit_attack(deepfool_search, mlp_apply, norm=norm)(MLP, x, y, None)
  eps = float(np.median(np.asarray(res.dist)[np.isfinite(np.asarray(res.dist))]))
  xa = jit_attack(deepfool, mlp_apply, norm=norm)(MLP, x, y, None, eps=eps)
  assert_valid(xa, x, eps, norm, tol=1e-5)
  keep = np.asarray(res.dist) <= eps
  np.testing.assert_allclose(np.asarray(xa)[keep], np.asarray(res.x_adv)[keep])
  np.testing.assert_array_equal(np.asarray(xa)[~keep], np.asarray(x)[~keep])


def test_batch_equals_its_halves():
  x, y = images(3, B), labels(3, B, K)
  run = jit_attack(deepfool_search, mlp_apply)
  full = run(MLP, x, y, None)
  halves = [run(MLP, x[s], y[s], None) for s in (slice(0, B // 2), slice(B // 2, B))]
  np.testing.assert_allclose(np.asarray(full.x_adv), np.concatenate([np.asarray(h.x_adv) for h in halves]),
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(full.steps), np.concatenate([np.asarray(h.steps) for h in halves]))


def test_registry_and_checks():
  info = registry.attack_info("deepfool")
  assert info.box == "white" and set(info.norms) == {"l2", "linf"}
  x, y = images(0, 2), labels(0, 2, K)
  f = lambda v: mlp_apply(MLP, v)
  with pytest.raises(ValueError, match="candidates"):
    deepfool(f, x, y, None, candidates=K)
  with pytest.raises(ValueError, match="linf"):
    deepfool(f, x, y, None, norm="l1")
