"""DDN: the closed-form minimum on a linear 2-class model, outputs adversarial or x, the eps option,
per-example keys (full batch = halves), registry entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.ddn import ddn, ddn_search
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.registry import attack_info, get_attack
from tests.attacks import aa_helpers
from tests.attacks.min_norm_helpers import closed_form, linear_two_class, norms_of, points, predict

KEY = jax.random.key(0)


def test_linear_two_class_closed_form():
  """Within 3% of |s| / ||w||_2 where that is in [0.05, 0.3] (from init_epsilon = 1 the norm shrinks by 5%
  a step, so much smaller distances need more than 100 steps)."""
  f, w, b = linear_two_class(0)
  x, y, s = points(w, b, 48)
  r = jax.jit(lambda x, y: ddn_search(f, x, y, KEY))(x, y)
  true = closed_form(w, s, "l2")
  assert np.asarray(r.success).all()
  sel = (true > 0.05) & (true < 0.3)
  assert sel.sum() >= 20
  ratio = np.asarray(r.norm)[sel] / true[sel]
  assert ratio.min() > 0.999 and ratio.max() < 1.03, (ratio.min(), ratio.max())
  np.testing.assert_allclose(np.asarray(r.norm), norms_of(r.x_adv, x, "l2"), rtol=1e-5)


def test_outputs_are_adversarial_or_x_and_eps_option():
  f = aa_helpers.random_model(3, "mlp")
  x = aa_helpers.random_images(3, 24)
  y = jnp.asarray(predict(f, x))
  y = y.at[:2].set((y[:2] + 1) % 10)
  res = ddn_search(f, x, y, KEY, steps=40)
  x_adv, nrm, ok = np.asarray(res.x_adv), np.asarray(res.norm), np.asarray(res.success)
  same = (x_adv == np.asarray(x)).reshape(len(x), -1).all(1)
  fooled = predict(f, res.x_adv) != np.asarray(y)
  assert (fooled | same).all() and (ok == fooled).all()
  assert ok[:2].all() and (nrm[:2] == 0).all()
  eps = float(np.median(nrm[ok]))
  out = np.asarray(ddn(f, x, y, KEY, steps=40, eps=eps))
  keep = ok & (nrm <= eps)
  np.testing.assert_array_equal(out[keep], x_adv[keep])
  np.testing.assert_array_equal(out[~keep], np.asarray(x)[~keep])


def test_per_example_keys_full_batch_equals_halves():
  """Saturated softmax (|s| in the hundreds): zero CE gradients, replaced by per-example normal draws."""
  f, w, b = linear_two_class(2, scale=400.0)
  x, y, _ = points(w, b, 8, seed=3)
  assert (np.abs(np.asarray(f(x))[:, 1]) > 60).sum() >= 2  # some start with an exactly zero gradient
  run = jax.jit(lambda x, y, k: ddn(f, x, y, k, steps=20))
  keys = example_keys(KEY, 8)
  full = np.asarray(run(x, y, KEY))
  halves = np.concatenate([np.asarray(run(x[:4], y[:4], keys[:4])), np.asarray(run(x[4:], y[4:], keys[4:]))])
  np.testing.assert_allclose(full, halves, atol=1e-6)
  assert not np.array_equal(full, np.asarray(run(x, y, jax.random.key(1))))  # the key matters


def test_registry():
  info = attack_info("ddn")
  assert info.min_norm and info.norms == ("l2",)
  with pytest.raises(ValueError):
    get_attack("ddn", norm="linf")
  with pytest.raises(ValueError, match="key"):
    ddn(aa_helpers.random_model(0), aa_helpers.random_images(0, 2), jnp.zeros(2, jnp.int32), None, steps=1)
