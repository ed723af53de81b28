"""FMN: the closed-form minimum on a linear 2-class model, outputs adversarial or x, the eps option, never
above what PGD found, targeted mode, registry entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.fmn import fmn, fmn_search
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import attack_info, get_attack
from tests.attacks import aa_helpers
from tests.attacks.min_norm_helpers import closed_form, linear_two_class, norms_of, points, predict

NORMS = ("linf", "l2", "l1")


@pytest.fixture(scope="module")
def linear():
  f, w, b = linear_two_class(0)
  x, y, s = points(w, b, 48)
  return f, w, x, y, s


@pytest.mark.parametrize("norm", NORMS)
def test_linear_two_class_closed_form(linear, norm):
  f, w, x, y, s = linear
  r = jax.jit(lambda x, y: fmn_search(f, x, y, norm=norm))(x, y)
  true = closed_form(w, s, norm)
  sel = true < 0.3  # no coordinate moves by more than 0.3: the box never binds there
  assert sel.sum() >= 30
  assert np.asarray(r.success).all()
  ratio = np.asarray(r.norm)[sel] / true[sel]
  assert ratio.min() > 0.999 and ratio.max() < 1.01, (ratio.min(), ratio.max())
  np.testing.assert_allclose(np.asarray(r.norm), norms_of(r.x_adv, x, norm), rtol=1e-5)
  assert (predict(f, r.x_adv) != np.asarray(y)).all()


@pytest.mark.parametrize("norm", NORMS)
def test_outputs_are_adversarial_or_x_and_eps_option(norm):
  f = aa_helpers.random_model(3, "mlp")
  x = aa_helpers.random_images(3, 24)
  y = jnp.asarray(predict(f, x))
  y = y.at[:3].set((y[:3] + 1) % 10)  # three points misclassified clean
  res = fmn_search(f, x, y, norm=norm, steps=30)
  x_adv, nrm, ok = np.asarray(res.x_adv), np.asarray(res.norm), np.asarray(res.success)
  same = (x_adv == np.asarray(x)).reshape(len(x), -1).all(1)
  fooled = predict(f, res.x_adv) != np.asarray(y)
  assert (fooled | same).all() and (ok == fooled).all()
  assert ok[:3].all() and (nrm[:3] == 0).all()  # misclassified clean: x itself, norm 0
  assert np.isinf(nrm[~ok]).all()
  assert x_adv.min() >= 0 and x_adv.max() <= 1
  eps = float(np.median(nrm[ok]))
  out = np.asarray(fmn(f, x, y, norm=norm, steps=30, eps=eps))
  keep = ok & (nrm <= eps)
  np.testing.assert_array_equal(out[keep], x_adv[keep])
  np.testing.assert_array_equal(out[~keep], np.asarray(x)[~keep])
  assert (norms_of(out, x, norm) <= eps * (1 + 1e-6)).all()


@pytest.mark.parametrize("norm,eps,step", [("linf", 0.05, 0.01), ("l2", 0.3, 0.06)])
def test_never_above_what_pgd_broke(norm, eps, step):
  """Where PGD-20 at eps breaks a point of a 10-class linear model, FMN's norm is at most eps (1% slack)."""
  f = aa_helpers.random_model(5, "linear")
  x = aa_helpers.random_images(5, 64)
  y = jnp.asarray(predict(f, x))
  x_pgd = pgd(f, x, y, None, eps=eps, step_size=step, steps=20, norm=norm, init="none")
  broken = predict(f, x_pgd) != np.asarray(y)
  assert 5 <= broken.sum() < len(x)
  r = fmn_search(f, x, y, norm=norm)
  nrm = np.asarray(r.norm)
  assert (nrm[broken] <= eps * 1.01).all(), nrm[broken].max()


def test_targeted_reaches_the_target_or_returns_x():
  f = aa_helpers.random_model(4, "mlp")
  x = aa_helpers.random_images(4, 16)
  t = jnp.asarray((predict(f, x) + 3) % 10)
  out = np.asarray(fmn(f, x, t, norm="l2", steps=50, targeted=True))
  hit = predict(f, out) == np.asarray(t)
  same = (out == np.asarray(x)).reshape(len(x), -1).all(1)
  assert (hit | same).all() and hit.mean() > 0.5


def test_overshoot_off_is_foolbox_update_and_still_sound(linear):
  """overshoot=False (foolbox's eps update) can stall on a linear boundary; it never returns a non-adversarial."""
  f, w, x, y, s = linear
  r = fmn_search(f, x, y, norm="l2", overshoot=False)
  ok = np.asarray(r.success)
  same = (np.asarray(r.x_adv) == np.asarray(x)).reshape(len(x), -1).all(1)
  assert ((predict(f, r.x_adv) != np.asarray(y)) | same).all()
  ratio = np.asarray(r.norm)[ok] / closed_form(w, s, "l2")[ok]
  assert ratio.max() < 1.01


def test_registry_and_determinism(linear):
  info = attack_info("fmn")
  assert info.min_norm and info.norms == ("linf", "l2", "l1") and info.jittable
  f, _, x, y, _ = linear
  a = get_attack("fmn", norm="l1", steps=10)
  np.testing.assert_array_equal(a(f, x, y, jax.random.key(0)), a(f, x, y, jax.random.key(1)))  # no randomness
  with pytest.raises(ValueError):
    get_attack("fmn", stepz=3)
