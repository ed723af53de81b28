"""SPAT: sp_logits, L_rob, the attack, the cosine-head projection (Hou, Han, Li 2023, eqs. 9-15)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.spat import (_fallback_project_cosine_head, make_spat, project_cosine_head,
                                    sp_logits, spat_kl_elements, spat_robust)
from jaxrobust.methods.trades import make_trades

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _cos_logits(seed, b=16, k=10):
  """Cosine-head-like logits: cos in [-1, 1] plus a small bias."""
  rng = np.random.default_rng(seed)
  c = rng.uniform(-1, 1, (b, k)) + 0.05 * rng.standard_normal(k)
  c_adv = np.clip(c + 0.3 * rng.standard_normal((b, k)), -1.1, 1.1)
  return c, c_adv, rng.integers(0, k, b)


@pytest.mark.parametrize("s,m,n,beta", [(8.0, 0.2, 0.2, 6.0), (5.0, 0.4, 0.6, 1.0), (1.0, 0.0, 0.0, 6.0)])
def test_spat_loss_matches_reference(s, m, n, beta):
  c, c_adv, y = _cos_logits(0)
  with h.x64():
    value, metrics = h.call_loss(make_spat(s=s, m=m, n=n, beta=beta), c, c_adv, y)
  total, l_acc, l_rob = ref.spat_loss(c, c_adv, y, s, m, n, beta)
  np.testing.assert_allclose(float(value), total, rtol=1e-10)
  np.testing.assert_allclose(float(metrics["loss_natural"]), l_acc, rtol=1e-10)
  np.testing.assert_allclose(float(metrics["loss_robust"]), l_rob, rtol=1e-10)


def test_s1_sp_logits():
  """g == 1 gives the NCE CE(s c, y); otherwise sp = s g c with g_y = 1 + m - c_y, g_j = c_j + m."""
  c, _, y = _cos_logits(1)
  with h.x64():
    cj, yj = jnp.asarray(c), jnp.asarray(y)
    np.testing.assert_allclose(sp_logits(cj, yj, s=8.0, m=0.2), ref.spat_sp_logits(c, y, 8.0, 0.2), rtol=1e-13)
    np.testing.assert_array_equal(sp_logits(cj, yj, s=8.0, m=0.2, self_paced=False), 8.0 * c)
    value, metrics = h.call_loss(make_spat(s=8.0, self_paced=False, beta=0.0), c, c, y)
    np.testing.assert_allclose(float(value), ref.cross_entropy(8.0 * c, y).mean(), rtol=1e-12)


def test_s2_rob_identity():
  c, c_adv, _ = _cos_logits(2)
  with h.x64():
    kl = np.asarray(spat_kl_elements(jnp.asarray(c), jnp.asarray(c_adv), 8.0))
    rob = np.asarray(spat_robust(jnp.asarray(c), jnp.asarray(c_adv), s=8.0, n=0.2))
  np.testing.assert_allclose(rob.mean(), 0.2 * kl.sum(1).mean() + (kl ** 2).sum(1).mean(), rtol=1e-12)
  np.testing.assert_allclose(rob.mean(), ref.spat_kl_loss(c, c_adv, 8.0, 0.2), rtol=1e-12)


def test_s3_rob_zero_at_clean_and_reductions():
  c, c_adv, _ = _cos_logits(3)
  with h.x64():
    cj, caj = jnp.asarray(c), jnp.asarray(c_adv)
    np.testing.assert_allclose(spat_robust(cj, cj, s=8.0, n=0.2), 0.0, atol=1e-15)
    g = h.jit(jax.grad(lambda ca: jnp.sum(spat_robust(cj, ca, s=8.0, n=0.2))))(cj)
    np.testing.assert_allclose(g, 0.0, atol=1e-14)      # so the attack needs the 0.001 N start
    inc = spat_robust(cj, caj, s=8.0, n=0.0)
    assert np.all(np.asarray(inc) >= 0)
    np.testing.assert_allclose(inc, np.sum(np.asarray(spat_kl_elements(cj, caj, 8.0)) ** 2, 1), rtol=1e-12)
    kl_only = spat_robust(cj, caj, s=8.0, n=1.0, inc=False)
    trades_kl = ref.kl_div_none(ref.log_softmax(8 * c_adv), ref.softmax(8 * c)).sum(1)
    np.testing.assert_allclose(kl_only, trades_kl, rtol=1e-12)


def test_s5_spat_reduces_to_trades():
  """g == 1, no L_inc, n = 1, s = 1 on an unnormalised model == TRADES with lambda = beta."""
  z_nat, y = h.random_logits(4)
  z_adv = z_nat + np.random.default_rng(5).standard_normal(z_nat.shape)
  spat = make_spat(s=1.0, n=1.0, beta=6.0, self_paced=False, inc=False)
  with h.x64():
    a, _ = h.call_loss(spat, z_nat, z_adv, y)
    b, _ = h.call_loss(make_trades(beta=6.0), z_nat, z_adv, y)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-13)
  np.testing.assert_allclose(float(a), ref.trades_loss(z_nat, z_adv, y, 6.0)[0], rtol=1e-12)


def test_detach_changes_gradient_not_value():
  c, c_adv, y = _cos_logits(6)
  with h.x64():
    (v1, _), g1 = h.call_loss(make_spat(), c, c_adv, y, grad=True)
    (v2, _), g2 = h.call_loss(make_spat(detach=True), c, c_adv, y, grad=True)
  np.testing.assert_allclose(float(v1), float(v2), rtol=1e-14)
  assert abs(float(g1) - float(g2)) > 1e-6
  assert np.isfinite(float(g1)) and np.isfinite(float(g2))


def test_s6_attack_in_ball_and_box_and_increases_rob():
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.uniform(0, 1, (16, 10)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
  method = make_spat(eps=0.1, step_size=0.03, steps=5)
  ctx = h.identity_ctx(0.0)
  params = {"w": jnp.asarray(1.0)}
  attack = lambda x, y: method.attack(params, {}, {"image": x, "label": y}, jax.random.key(0), (), ctx)
  x_adv, _ = h.jit(attack)(x, y)
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6
  assert float(jnp.min(x_adv)) >= 0 and float(jnp.max(x_adv)) <= 1
  rob = spat_robust(x, x_adv, s=8.0, n=0.2)
  assert float(jnp.mean(rob)) > 1e-3


def test_s4_projection_renormalises_the_cosine_head():
  model = h.TinyMLP(head="cosine")
  x, _ = h.digits(32)
  variables = model.init(jax.random.key(0), jnp.asarray(x))
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: v * 3.0 if "kernel" in jax.tree_util.keystr(p) else v, variables["params"])
  projected = project_cosine_head(params)
  kernel = [v for p, v in jax.tree_util.tree_flatten_with_path(projected)[0]
            if "cosine_kernel" in jax.tree_util.keystr(p)][0]
  np.testing.assert_allclose(jnp.linalg.norm(kernel, axis=0), 1.0, rtol=1e-5)
  # Non-head leaves are untouched.
  np.testing.assert_array_equal(projected["dense"]["kernel"], params["dense"]["kernel"])
  out = model.apply({**variables, "params": projected}, jnp.asarray(x))
  assert float(jnp.max(jnp.abs(out - projected["head"]["bias"]))) <= 1.0 + 1e-5
  # The fallback (documented assumption: 'cosine_kernel' leaves, 'kernel' under 'cosine_head').
  tree = {"cosine_head": {"kernel": 3.0 * jnp.ones((4, 3)), "bias": jnp.ones(3)},
          "other": {"kernel": 3.0 * jnp.ones((4, 3))}}
  out = _fallback_project_cosine_head(tree)
  np.testing.assert_allclose(jnp.linalg.norm(out["cosine_head"]["kernel"], axis=0), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(out["other"]["kernel"], tree["other"]["kernel"])
  np.testing.assert_array_equal(out["cosine_head"]["bias"], tree["cosine_head"]["bias"])


@pytest.mark.parametrize("kw", [dict(s=0.0), dict(m=-0.1), dict(n=-1.0), dict(beta=-6.0), dict(steps=-1)])
def test_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_spat(**kw)


def test_rejects_single_logit_head():
  z = np.random.default_rng(8).standard_normal((4, 1))
  with pytest.raises(ValueError, match="cosine head"):
    h.call_loss(make_spat(), z, z, np.array([0, 1, 0, 1]))


def test_train_step_spat_cosine_head():
  _, state, _ = h.check_training(make_spat(steps=2), head="cosine")
  kernel = state.params["head"]["cosine_kernel"]
  np.testing.assert_allclose(jnp.linalg.norm(kernel, axis=0), 1.0, rtol=1e-5)
