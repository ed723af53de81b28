"""Listwise top-one-probability regulariser in compositional form (Li, Tong, Yang 2023, eqs. 8, 11, 12)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.methods.adap_state import (listwise_attack_loss, listwise_batch_means, listwise_kl,
                                          listwise_loss, top_one_scores)

try:
  from tests.adap.adap_helpers import h
except ImportError:
  from adap_helpers import h


def _scores(seed, b=20):
  rng = np.random.default_rng(seed)
  z = 2.0 * rng.standard_normal(b)
  z_adv = z + rng.standard_normal(b)
  return z, z_adv


def _kl_softmax(h_, h_adv):
  p, q = jax.nn.softmax(h_), jax.nn.softmax(h_adv)
  return jnp.sum(p * (jnp.log(p) - jnp.log(q)))


def test_compositional_form_is_the_kl_of_top_one_probabilities():
  z, z_adv = _scores(0)
  with h.x64():
    hh, ha = top_one_scores(jnp.asarray(z)), top_one_scores(jnp.asarray(z_adv)[:, None])
    np.testing.assert_allclose(np.asarray(hh), np.tanh(z), rtol=1e-14)
    r = float(listwise_kl(hh, ha))
    np.testing.assert_allclose(r, float(_kl_softmax(hh, ha)), rtol=1e-12)
    g = np.asarray(listwise_batch_means(hh, ha))
    np.testing.assert_allclose(r, g[0] / g[1] - np.log(g[1]) + np.log(g[2]), rtol=1e-12)
    assert r >= 0
    assert abs(float(listwise_kl(hh, hh + 0.37))) < 1e-14  # softmax shift invariance
    # the mask drops padding rows: same as the KL over the real rows only
    mask = jnp.asarray([1.0] * 15 + [0.0] * 5)
    np.testing.assert_allclose(float(listwise_kl(hh, ha, mask)), float(_kl_softmax(hh[:15], ha[:15])), rtol=1e-12)


def test_estimator_value_and_gradient_at_gamma_one():
  z, z_adv = _scores(1)
  with h.x64():
    hh, ha = jnp.tanh(jnp.asarray(z)), jnp.tanh(jnp.asarray(z_adv))
    u0 = jnp.asarray([0.3, 1.2, 0.9])
    value, u = listwise_loss(hh, ha, u0, gamma=1.0)
    assert abs(float(value)) < 1e-14
    np.testing.assert_allclose(np.asarray(u), np.asarray(listwise_batch_means(hh, ha)), rtol=1e-14)
    est = jax.grad(lambda a, b: listwise_loss(a, b, u0, gamma=1.0)[0], argnums=(0, 1))(hh, ha)
    direct = jax.grad(lambda a, b: listwise_kl(a, b), argnums=(0, 1))(hh, ha)
    for e, d in zip(est, direct):
      np.testing.assert_allclose(np.asarray(e), np.asarray(d), rtol=1e-10, atol=1e-15)
    # finite differences of R in h'
    eps = 1e-6
    r_of = jax.jit(jax.vmap(lambda a: listwise_kl(hh, a)))
    e = np.eye(len(z))
    fd = (np.asarray(r_of(ha + eps * e)) - np.asarray(r_of(ha - eps * e))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(direct[1]), fd, atol=1e-8)


def test_lz_attack_gradient_is_grad_r_in_h_adv():
  """At g2m = 1 the LZ attack objective's gradient in h' equals grad_{h'} R; the stored u_r is not written."""
  z, z_adv = _scores(2)
  with h.x64():
    u_r = jnp.asarray([0.1, 0.2, 0.3])
    loss = listwise_attack_loss(u_r, gamma=1.0)
    assert loss.needs_reference
    hh = jnp.tanh(jnp.asarray(z))
    # feed h' through atanh so that d/dh' is read off directly
    g_att = jax.grad(lambda ha: jnp.sum(loss(jnp.arctanh(ha)[:, None], None, jnp.asarray(z)[:, None])))(
        jnp.tanh(jnp.asarray(z_adv)))
    g_r = jax.grad(lambda ha: listwise_kl(hh, ha))(jnp.tanh(jnp.asarray(z_adv)))
    np.testing.assert_allclose(np.asarray(g_att), np.asarray(g_r), rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(u_r), [0.1, 0.2, 0.3])


def test_estimators_track_running_means():
  """u_r after t updates with constant batches: c (1 - (1 - g)^t)."""
  z, z_adv = _scores(3)
  hh, ha = jnp.tanh(jnp.asarray(z)), jnp.tanh(jnp.asarray(z_adv))
  c = np.asarray(listwise_batch_means(hh, ha))
  u = jnp.zeros(3)
  for t in range(1, 5):
    _, u = listwise_loss(hh, ha, u, gamma=0.9)
    np.testing.assert_allclose(np.asarray(u), c * (1 - 0.1 ** t), rtol=1e-5)
