"""CW-L2 (Carlini & Wagner 2017: objective, binary search, early abort) and CW-Linf (its margin loss is tested in
tests/test_losses.py)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, jit_attack, l2, labels, linear_apply,  # noqa: E402
                            mlp_apply, mlp_params)

from jaxrobust import losses  # noqa: E402
from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.cw import cw_l2, cw_l2_search, cw_linf  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402

B, K = 8, 5
X = images(0, B)
Y = labels(0, B, K)
MLP = mlp_params(1, 12, 16, K)
KEY = jax.random.key(0)
CW_DIGITS = jit_attack(cw_l2_search, linear_apply, steps=50)


def _pred(apply, p, x):
  return np.asarray(jnp.argmax(apply(p, x), -1))


def test_box_and_only_misclassified_points_are_returned():
  """x' in [0, 1]; x' != x only where it is misclassified; l2 is its squared distance."""
  params, x, y = digits_model()
  res = CW_DIGITS(params, x, y, None, c=10.0, lr=0.1)  # aggressive: pushes pixels to the box edges
  xa = np.asarray(res.x_adv)
  assert xa.min() >= 0.0 and xa.max() <= 1.0
  moved = np.abs(xa - np.asarray(x)).reshape(len(y), -1).max(1) > 0
  wrong = _pred(linear_apply, params, res.x_adv) != np.asarray(y)
  assert np.all(wrong[moved]) and np.all(wrong == np.asarray(res.success))
  assert res.success.mean() > 0.9
  ok = np.asarray(res.success)
  np.testing.assert_allclose(np.asarray(res.l2)[ok], l2(res.x_adv, x)[ok] ** 2, rtol=1e-4, atol=1e-6)
  assert np.all(np.isinf(np.asarray(res.l2)[~ok]))


def test_best_l2_non_increasing_over_steps():
  """C3: runs of 10 and 40 steps share their prefix (no early abort), so best_L2 can only shrink."""
  prev = None
  for steps in (10, 40):
    r = jit_attack(cw_l2_search, mlp_apply, steps=steps, abort_early=None)(MLP, X, Y, None, c=5.0, lr=0.05)
    cur = np.asarray(r.l2)
    if prev is not None:
      assert np.all(cur <= prev)
    prev = cur
  assert np.isfinite(prev).sum() >= 4


def test_c_zero_keeps_clean_accuracy():
  """C5: with c = 0 the objective is the L2 distance alone, so CW robust accuracy = clean accuracy."""
  params, x, y = digits_model()
  res = CW_DIGITS(params, x, y, None, c=0.0, lr=0.01)
  clean = _pred(linear_apply, params, x) == np.asarray(y)
  robust = _pred(linear_apply, params, res.x_adv) == np.asarray(y)
  np.testing.assert_array_equal(robust, clean)
  assert np.all(l2(res.x_adv, x)[clean] == 0)


def test_binary_search_never_worse_than_fixed_c():
  """The first outer run is the fixed-c run; later runs only add successes or shorten them."""
  fixed = jit_attack(cw_l2_search, mlp_apply, steps=30)(MLP, X, Y, None, c=0.05, lr=0.05)
  search = jit_attack(cw_l2_search, mlp_apply, steps=30, binary_search_steps=5)(MLP, X, Y, None, c=0.05, lr=0.05)
  f_ok, s_ok = np.asarray(fixed.success), np.asarray(search.success)
  assert np.all(s_ok >= f_ok) and s_ok.sum() > f_ok.sum()
  assert np.all(np.asarray(search.l2)[f_ok] <= np.asarray(fixed.l2)[f_ok] + 1e-7)
  assert np.all(_pred(mlp_apply, MLP, search.x_adv)[s_ok] != np.asarray(Y)[s_ok])


def test_per_example_abort_keeps_examples_independent():
  f = jit_attack(cw_l2_search, mlp_apply, steps=30, abort_early="example")
  batch = f(MLP, X, Y, None, c=1.0, lr=0.05)
  for i in (0, 6):
    alone = f(MLP, X[i:i + 1], Y[i:i + 1], None, c=1.0, lr=0.05)
    np.testing.assert_allclose(alone.x_adv[0], batch.x_adv[i], atol=1e-5)
    assert bool(alone.success[0]) == bool(batch.success[i])


def test_eps_option_counts_only_adversarials_inside_the_l2_ball():
  params, x, y = digits_model()
  res = CW_DIGITS(params, x, y, None, c=1.0, lr=0.01)
  a = jax.jit(lambda p, x, y: cw_l2(lambda v: linear_apply(p, v), x, y, eps=0.2, steps=50))(params, x, y)
  inside = np.asarray(res.success) & (np.sqrt(np.where(res.success, res.l2, 0)) <= 0.2)
  np.testing.assert_array_equal(np.asarray(a)[inside], np.asarray(res.x_adv)[inside])
  np.testing.assert_array_equal(np.asarray(a)[~inside], np.asarray(x)[~inside])
  assert 0 < inside.sum() < len(y)


def test_cw_linf_is_pgd_on_the_cw_margin():
  a = jit_attack(cw_linf, mlp_apply, steps=5, init="none")(MLP, X, Y, None, eps=0.1, step_size=0.03)
  b = jit_attack(pgd, mlp_apply, steps=5, init="none", loss=losses.make_cw_margin(50.0))(
      MLP, X, Y, None, eps=0.1, step_size=0.03)
  np.testing.assert_array_equal(a, b)
  assert_valid(a, X, 0.1)
  # it lowers the margin z_y - max_{j != y} z_j
  m0 = losses.margin(mlp_apply(MLP, X), Y)
  assert np.all(np.asarray(losses.margin(mlp_apply(MLP, a), Y) < m0))


def test_registry_and_bad_inputs():
  assert {"cw_l2", "cw_linf"} <= set(registry.attack_names())
  f = lambda v: mlp_apply(MLP, v)
  a = registry.get_attack("cw_linf", eps=0.05, steps=2)(f, X, Y, KEY)
  assert_valid(a, X, 0.05)
  with pytest.raises(ValueError, match="abort_early"):
    cw_l2(f, X, Y, abort_early="sometimes")
  with pytest.raises(ValueError, match="c must be"):
    cw_l2(f, X, Y, c=-1.0)
  with pytest.raises(ValueError, match="binary_search_steps"):
    cw_l2(f, X, Y, binary_search_steps=0)


@pytest.mark.torch
def test_cw_l2_matches_torchattacks():
  torch = pytest.importorskip("torch", reason="torch not installed")
  ta = pytest.importorskip("torchattacks", reason="torchattacks not installed")
  from attack_testkit import to_torch, torch_linear
  params, x, y = digits_model()
  ref = ta.CW(torch_linear(params), c=1.0, kappa=0, steps=50, lr=0.01)(to_torch(x), to_torch(y).long()).numpy()
  res = CW_DIGITS(params, x, y, None, c=1.0, lr=0.01)
  np.testing.assert_allclose(np.asarray(res.x_adv), ref, atol=1e-5)
  del torch
