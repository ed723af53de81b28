"""SOAP AP surrogate and its per-positive estimators (Qi et al. 2021; Li, Tong, Yang 2023, eqs. 1-3), duplicates, the MM attack loss."""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import average_precision_score

from jaxrobust.evaluate.average_precision import average_precision
from jaxrobust.methods.adap_state import (ap_attack_loss, direct_ap_surrogate, init_adap_state,
                                          last_write_mask, soap_loss, squared_hinge_matrix)

try:
  from tests.adap.adap_helpers import RefAPLoss, h
except ImportError:
  from adap_helpers import RefAPLoss, h


def _batch(seed, b=24, n_pos=8):
  rng = np.random.default_rng(seed)
  s = rng.uniform(0.0, 1.0, b)
  y = np.zeros(b, np.int32)
  y[rng.choice(b, n_pos, replace=False)] = 1
  return s, y


def test_gradient_equals_direct_surrogate_at_gamma_one():
  """g1 = 1 and B = the whole (small) set: loss_AP == 0 and grad_s loss_AP == grad_s P."""
  s, y = _batch(0)
  idx = np.arange(len(s))
  with h.x64():
    st = init_adap_state(len(s), jnp.float64)

    def est(s_):
      return soap_loss(s_, jnp.asarray(y), jnp.asarray(idx), st.u_all, st.u_pos, gamma=1.0)[0]

    value, g_est = jax.value_and_grad(est)(jnp.asarray(s))
    g_direct = jax.grad(lambda s_: direct_ap_surrogate(s_, jnp.asarray(y)))(jnp.asarray(s))
    assert abs(float(value)) < 1e-14
    np.testing.assert_allclose(np.asarray(g_est), np.asarray(g_direct), rtol=1e-10, atol=1e-14)
    # and P's gradient is the finite difference of P
    eps = 1e-6
    p_of = jax.jit(jax.vmap(lambda s_: direct_ap_surrogate(s_, jnp.asarray(y))))
    e = np.eye(len(s))
    fd = (np.asarray(p_of(jnp.asarray(s + eps * e))) - np.asarray(p_of(jnp.asarray(s - eps * e)))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(g_direct), fd, atol=1e-7)


def test_indicator_surrogate_is_ap_and_hinge_bounds():
  rng = np.random.default_rng(1)
  s = rng.permutation(200) / 200.0  # distinct scores
  y = (rng.uniform(size=200) < 0.2).astype(np.int32)
  ind = (s[None, :] >= s[:, None]).astype(float)  # 1(s_j >= s_i), row i
  pos = y == 1
  ratio = (ind[pos] * pos[None, :]).sum(1) / ind[pos].sum(1)
  np.testing.assert_allclose(ratio.mean(), average_precision_score(y, s), rtol=1e-12)
  np.testing.assert_allclose(ratio.mean(), average_precision(y, s), rtol=1e-12)
  with h.x64():
    mat = np.asarray(squared_hinge_matrix(jnp.asarray(s)))
    r = (mat[pos] * pos[None, :]).sum(1) / mat[pos].sum(1)
    assert np.all(r >= 0) and np.all(r <= 1)
    p = float(direct_ap_surrogate(jnp.asarray(s), jnp.asarray(y)))
    assert -1.0 <= p < 0.0
    np.testing.assert_allclose(p, -r.mean(), rtol=1e-12)


def test_bookkeeping_and_reference_port_over_steps():
  """Tables change only at positive batch rows, u_all >= g1 m^2 / |B|, u_pos <= u_all; loss, tables and
  gradient match a NumPy port of LibAUC's forward step by step (with a duplicated index)."""
  n, b, g = 40, 16, 0.1
  ref = RefAPLoss(n, g)
  rng = np.random.default_rng(2)
  with h.x64():
    st = init_adap_state(n, jnp.float64)
    fn = jax.jit(lambda s, y, i, ua, up: jax.value_and_grad(
        lambda s_: soap_loss(s_, y, i, ua, up, gamma=g), has_aux=True)(s))
    for t in range(5):
      s = rng.uniform(size=b)
      y = np.r_[np.ones(b // 2), np.zeros(b // 2)].astype(np.int32)
      idx = rng.choice(n, b, replace=False)
      if t == 3:
        idx[2] = idx[5]  # a positive seen twice in one batch
      (loss, (ua, up)), grad = fn(jnp.asarray(s), jnp.asarray(y), jnp.asarray(idx), st.u_all, st.u_pos)
      ref_loss, ref_grad = ref(s, y, idx)
      np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-10, atol=1e-15)
      np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-9, atol=1e-13)
      np.testing.assert_allclose(np.asarray(ua), ref.u_all[:, 0], rtol=1e-12)
      np.testing.assert_allclose(np.asarray(up), ref.u_pos[:, 0], rtol=1e-12)
      changed = np.flatnonzero((np.asarray(ua) != np.asarray(st.u_all)) | (np.asarray(up) != np.asarray(st.u_pos)))
      assert set(changed) <= set(idx[y == 1])
      seen = np.asarray(ua) > 0
      assert np.all(np.asarray(ua)[seen] >= g * 0.36 / b - 1e-15)
      assert np.all(np.asarray(up) <= np.asarray(ua) + 1e-15)
      st = st._replace(u_all=ua, u_pos=up)
    assert ua.shape == (n,) and ua.dtype == jnp.float64


def test_moving_average_of_constant_batch():
  s, y = _batch(3, b=12, n_pos=4)
  idx = np.arange(12)
  g = 0.3
  with h.x64():
    st = init_adap_state(12, jnp.float64)
    mat = squared_hinge_matrix(jnp.asarray(s))
    c = np.asarray(jnp.mean(mat, axis=1))
    ua, up = st.u_all, st.u_pos
    for t in range(1, 6):
      _, (ua, up) = soap_loss(jnp.asarray(s), jnp.asarray(y), jnp.asarray(idx), ua, up, gamma=g)
      pos = y == 1
      np.testing.assert_allclose(np.asarray(ua)[pos], c[pos] * (1 - (1 - g) ** t), rtol=1e-12)
      assert np.all(np.asarray(ua)[~pos] == 0)


def test_duplicate_indices_last_write_wins_deterministically():
  """Two positive rows with the same dataset index: the later row's value is stored, both rows read it,
  and the result is the same every call, jitted or not, and independent of the other rows' order."""
  s = jnp.asarray([0.9, 0.2, 0.6, 0.1, 0.4, 0.3])
  y = jnp.asarray([1, 1, 1, 0, 0, 0])
  idx = jnp.asarray([5, 7, 5, 0, 1, 2])
  st = init_adap_state(10)
  np.testing.assert_array_equal(last_write_mask(idx, y == 1), [False, True, True, False, False, False])
  out = [jax.jit(lambda s_: soap_loss(s_, y, idx, st.u_all, st.u_pos, gamma=0.5))(s) for _ in range(3)]
  out.append(soap_loss(s, y, idx, st.u_all, st.u_pos, gamma=0.5))
  for o in out[1:]:
    np.testing.assert_array_equal(np.asarray(o[1][0]), np.asarray(out[0][1][0]))
    np.testing.assert_array_equal(np.asarray(o[1][1]), np.asarray(out[0][1][1]))
  np.testing.assert_array_equal(np.asarray(out[1][0]), np.asarray(out[0][0]))  # jitted calls: bitwise
  np.testing.assert_allclose(np.asarray(out[3][0]), np.asarray(out[0][0]), rtol=1e-6)
  ua = np.asarray(out[0][1][0])
  mat = np.asarray(squared_hinge_matrix(s))
  np.testing.assert_allclose(ua[5], 0.5 * mat[2].mean(), rtol=1e-6)  # row 2 (the later one) wins
  ref = RefAPLoss(10, 0.5)
  ref_loss, _ = ref(np.asarray(s), np.asarray(y), np.asarray(idx))
  np.testing.assert_allclose(float(out[0][0]), ref_loss, rtol=1e-5)
  np.testing.assert_allclose(ua, ref.u_all[:, 0], rtol=1e-6)


def test_mm_attack_loss_uses_temporary_estimators():
  """Sum of the per-row attack losses = mean(p L) with u_tmp = (1-g) u_stored + g batch; at g = 1 the
  stored values do not matter and the gradient is SOAP's gradient at g = 1."""
  s, y = _batch(4, b=10, n_pos=4)
  z = np.log(s / (1 - s))
  idx = np.arange(10)
  with h.x64():
    rng = np.random.default_rng(0)
    u_all = jnp.asarray(rng.uniform(0.1, 0.3, 10))
    u_pos = u_all * 0.5
    for g in (0.1, 1.0):
      loss = ap_attack_loss(u_all, u_pos, gamma=g)
      val = float(jnp.sum(loss(jnp.asarray(z)[:, None], jnp.asarray(y), None)))
      ua, up = (np.asarray(u_all), np.asarray(u_pos))
      st = init_adap_state(10, jnp.float64)._replace(u_all=jnp.asarray(ua), u_pos=jnp.asarray(up))
      expected, _ = soap_loss(jnp.asarray(s), jnp.asarray(y), jnp.asarray(idx), st.u_all, st.u_pos, gamma=g)
      np.testing.assert_allclose(val, float(expected), rtol=1e-10, atol=1e-14)
    ga = jax.grad(lambda zz: jnp.sum(ap_attack_loss(u_all, u_pos, gamma=1.0)(zz[:, None], jnp.asarray(y), None)))(
        jnp.asarray(z))
    gd = jax.grad(lambda zz: direct_ap_surrogate(jax.nn.sigmoid(zz), jnp.asarray(y)))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(ga), np.asarray(gd), rtol=1e-9, atol=1e-14)
