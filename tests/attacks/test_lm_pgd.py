"""LM-PGD (MAIL appendix A): validity, the BIM special case, the line search, independence."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, jit_attack, labels, linear_apply,  # noqa: E402
                            mlp_apply, mlp_params, per_example_ce)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.lm_pgd import lm_pgd  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402

B, K = 8, 5
X = images(0, B)
Y = labels(0, B, K)
MLP = mlp_params(1, 12, 16, K)
LM5 = jit_attack(lm_pgd, mlp_apply, steps=5, n_alpha=4)


def test_valid_and_eps_zero():
  for eps in (0.0, 0.05, 0.4):
    a = LM5(MLP, X, Y, None, eps=eps, momentum=0.8, alpha_max=0.75 * eps, alpha_min=0.5 * eps, alpha_min_late=0.0)
    assert_valid(a, X, eps)
    if eps == 0:
      np.testing.assert_array_equal(a, X)


def test_no_momentum_and_a_single_step_size_is_bim():
  a = LM5(MLP, X, Y, None, eps=0.1, momentum=0.0, alpha_max=0.03, alpha_min=0.03, alpha_min_late=0.03)
  b = jit_attack(pgd, mlp_apply, steps=5, init="none")(MLP, X, Y, None, eps=0.1, step_size=0.03)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_line_search_picks_the_best_grid_step():
  """One step from x (v_0 = 0): the result's loss is the max over the candidate steps."""
  eps, lo, hi, n = 0.2, 0.02, 0.2, 6
  a = jit_attack(lm_pgd, mlp_apply, steps=1, n_alpha=n)(MLP, X, Y, None, eps=eps, momentum=0.8, alpha_max=hi,
                                                         alpha_min=lo, alpha_min_late=0.0)
  g = jax.grad(lambda v: jnp.sum(per_example_ce(mlp_apply, MLP, v, Y)))(X)
  cands = [jnp.clip(jnp.clip(X + al * jnp.sign(g), X - eps, X + eps), 0, 1) for al in np.linspace(lo, hi, n)]
  cand_losses = np.stack([np.asarray(per_example_ce(mlp_apply, MLP, c, Y)) for c in cands])
  got = np.asarray(per_example_ce(mlp_apply, MLP, a, Y))
  np.testing.assert_allclose(got, cand_losses.max(0), rtol=1e-5)


def test_batch_equals_each_example_alone():
  kw = dict(eps=0.1, momentum=0.8, alpha_max=0.075, alpha_min=0.05, alpha_min_late=0.0)
  batch = LM5(MLP, X, Y, None, **kw)
  for i in (1, 6):
    np.testing.assert_allclose(LM5(MLP, X[i:i + 1], Y[i:i + 1], None, **kw)[0], batch[i], atol=1e-6)


def test_attacks_the_digits_model():
  params, x, y = digits_model()
  a = jax.jit(lambda p: lm_pgd(lambda v: linear_apply(p, v), x, y, eps=0.1, steps=20))(params)
  assert_valid(a, x, 0.1)
  clean = float(jnp.mean(jnp.argmax(linear_apply(params, x), -1) == y))
  robust = float(jnp.mean(jnp.argmax(linear_apply(params, a), -1) == y))
  assert robust < clean - 0.2, (clean, robust)


def test_registry_and_bad_inputs():
  assert "lm_pgd" in registry.attack_names()
  f = lambda v: mlp_apply(MLP, v)
  with pytest.raises(ValueError, match="n_alpha"):
    lm_pgd(f, X, Y, eps=0.1, n_alpha=0)
  with pytest.raises(ValueError, match="alpha_max"):
    lm_pgd(f, X, Y, eps=0.1, alpha_max=-1.0)
  with pytest.raises(ValueError, match="PRNG key"):
    lm_pgd(f, X, Y, None, eps=0.1, init="uniform")
