"""The five AdAP variants, AP Max. and the binary baselines (Li, Tong, Yang 2023, Table 1 and Section 5; train-step properties)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.adap import REGISTRY, make_adap, make_ap_max, make_binary_baseline, pointwise_kl
from jaxrobust.methods.adap_state import init_adap_state
from jaxrobust.methods.registry import get_method, method_names
from jaxrobust.methods.standard import make_standard
from jaxrobust.train.step import make_context

try:
  from tests.adap.adap_helpers import call_method_loss, h
except ImportError:
  from adap_helpers import call_method_loss, h

ADAP = ("adap_mm", "adap_pz", "adap_lz", "adap_ln", "adap_lpn", "ap_max")
BASELINES = ("bce", "pgd_bce", "trades_binary", "mart_binary")


def _inputs(seed=0, b=16, n=40):
  rng = np.random.default_rng(seed)
  z = 2 * rng.standard_normal(b)
  z_adv = z + rng.standard_normal(b)
  y = np.r_[np.ones(b // 2), np.zeros(b // 2)].astype(np.int32)
  idx = rng.choice(n, b, replace=False)
  st = init_adap_state(n)._replace(u_all=jnp.asarray(rng.uniform(0.1, 0.3, n), jnp.float32),
                                   u_pos=jnp.asarray(rng.uniform(0.0, 0.1, n), jnp.float32),
                                   u_r=jnp.asarray([0.2, 1.1, 1.3], jnp.float32))
  return z, z_adv, y, idx, st


def test_registry_names():
  names = set(method_names())
  assert set(ADAP) | set(BASELINES) <= names
  assert set(REGISTRY) == set(ADAP) | set(BASELINES)
  with pytest.raises(ValueError, match="variant"):
    make_adap("xx")
  with pytest.raises(ValueError, match="gamma1"):
    get_method("adap_ln", gamma1=0.0)


def test_variant_relations():
  z, z_adv, y, idx, st = _inputs()
  lam = 0.8
  ln, aux_ln = call_method_loss(make_adap("ln", lam=lam), z, z_adv, y, idx, st)
  lpn, aux_lpn = call_method_loss(make_adap("lpn", lam=lam), z, z_adv, y, idx, st)
  np.testing.assert_allclose(float(lpn) - lam * float(aux_lpn.metrics["loss_pointwise"]), float(ln), rtol=1e-5,
                             atol=1e-7)
  for a, b in zip(aux_ln.method_state, aux_lpn.method_state):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # LZ's outer loss is LN's
  lz, aux_lz = call_method_loss(make_adap("lz", lam=lam), z, z_adv, y, idx, st)
  assert float(lz) == float(ln)
  # pointwise terms vanish at x_adv = x
  for v in ("pz", "lpn"):
    _, aux = call_method_loss(make_adap(v, lam=lam), z, z, y, idx, st)
    assert abs(float(aux.metrics["loss_pointwise"])) < 1e-6
  # LN with lam = 0 is AP Max. (value, gradient and estimator update); listwise u_r still tracked
  ap, aux_ap = call_method_loss(make_ap_max(), z, None, y, idx, st)
  ln0, aux0 = call_method_loss(make_adap("ln", lam=0.0), z, z_adv, y, idx, st)
  np.testing.assert_allclose(float(ln0), float(ap), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(aux0.method_state.u_all), np.asarray(aux_ap.method_state.u_all))
  np.testing.assert_array_equal(np.asarray(aux_ap.method_state.u_r), np.asarray(st.u_r))
  # MM is AP Max. on the perturbed scores
  mm, aux_mm = call_method_loss(make_adap("mm"), z, z_adv, y, idx, st)
  ap_adv, aux_ap_adv = call_method_loss(make_ap_max(), z_adv, None, y, idx, st)
  np.testing.assert_allclose(float(mm), float(ap_adv), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(aux_mm.method_state.u_pos), np.asarray(aux_ap_adv.method_state.u_pos))


def test_pointwise_kl_and_baselines_match_formulas():
  z, z_adv, y, idx, st = _inputs(1)
  with h.x64():
    p, q = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-z_adv))
    kl = p * (np.log(p) - np.log(q + 1e-12)) + (1 - p) * (np.log(1 - p) - np.log(1 - q + 1e-12))
    np.testing.assert_allclose(float(pointwise_kl(jnp.asarray(z_adv), jnp.asarray(z))), kl.mean(), rtol=1e-10)
    bce = lambda s: -(y * np.log(s) + (1 - y) * np.log(1 - s))
    lam = 3.0
    v, _ = call_method_loss(make_binary_baseline("trades_binary", lam=lam), z, z_adv, y, idx, ())
    np.testing.assert_allclose(float(v), bce(p).mean() + lam * kl.mean(), rtol=1e-10)
    v, _ = call_method_loss(make_binary_baseline("mart_binary", lam=lam), z, z_adv, y, idx, ())
    np.testing.assert_allclose(float(v), bce(q).mean() + lam * np.mean(kl * np.abs(y - p)), rtol=1e-10)
    v, _ = call_method_loss(make_binary_baseline("pgd_bce"), z, z_adv, y, idx, ())
    np.testing.assert_allclose(float(v), bce(q).mean(), rtol=1e-10)
    v, _ = call_method_loss(make_binary_baseline("bce"), z, None, y, idx, ())
    v_std, _ = call_method_loss(make_standard(), z, None, y, idx, ())
    np.testing.assert_allclose(float(v), bce(p).mean(), rtol=1e-10)
    np.testing.assert_allclose(float(v_std), float(v), rtol=1e-12)  # 'standard' is the same for one logit


def test_single_logit_required():
  m = make_adap("ln")
  with pytest.raises(ValueError, match="single-logit"):
    ctx = h.identity_ctx(num_classes=2)
    batch = {"image": jnp.zeros((4, 3)), "label": jnp.zeros(4, jnp.int32), "index": jnp.arange(4)}
    m.loss({"w": jnp.asarray(1.0)}, {}, batch, jnp.zeros((4, 3)), None, init_adap_state(4), None, ctx)


@pytest.mark.parametrize("name", ADAP + BASELINES)
def test_train_step_runs_keeps_state_and_improves(name):
  """Every method: finite, state shapes/dtypes kept, one compilation, and its objective improves on a tiny
  task (the AP surrogate P for AP methods -- their loss value is ~0 by construction -- else the loss)."""
  kw = {} if name in ("ap_max", "bce") else dict(eps=0.05, step_size=0.02, steps=2)
  method = get_method(name, **kw)
  state0, state, metrics, step_fn = h.run_training(method, head="single_logit", n_steps=8, lr=1e-2)
  h.assert_same_structure(state0, state)
  assert step_fn._cache_size() == 1
  key = "surrogate_ap" if name in ADAP else "loss"
  vals = np.array([float(m[key]) for m in metrics])
  assert np.all(np.isfinite(vals)) and np.all(np.isfinite([float(m["loss"]) for m in metrics]))
  assert vals[-2:].mean() < vals[:2].mean(), vals
  if name in ADAP:
    ms0, ms = state0.method_state, state.method_state
    pos = np.asarray(h.digits(128, binary=True)[1]) == 1
    ua = np.asarray(ms.u_all)
    assert np.all(ua[pos] > 0) and np.all(ua[~pos] == 0)  # only positives own estimators
    assert np.all(np.asarray(ms.u_pos) <= ua + 1e-7)
    if name in ("adap_lz", "adap_ln", "adap_lpn"):
      assert np.all(np.asarray(ms.u_r) > 0)


@pytest.mark.parametrize("name", ["adap_mm", "adap_pz", "adap_lz", "adap_ln"])
def test_training_attack_stays_in_ball_and_box(name):
  x, y = h.digits(32, binary=True)
  model = h.TinyMLP(head="single_logit")
  variables = model.init(jax.random.key(0), jnp.asarray(x[:2]))
  method = get_method(name, eps=0.1, step_size=0.04, steps=4)
  st = method.init_state(type("I", (), {"num_examples": 32})())
  st = st._replace(u_all=st.u_all + 0.2, u_pos=st.u_pos + 0.05, u_r=jnp.asarray([0.1, 1.0, 1.0]))
  ctx = make_context(model, jnp.asarray(0), 10, 2)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y), "index": jnp.arange(32, dtype=jnp.int32)}
  x_adv, _ = jax.jit(lambda p, bs, k: method.attack(p, bs, batch, k, st, ctx))(
      variables["params"], variables["batch_stats"], jax.random.key(1))
  d = np.asarray(x_adv) - x
  assert np.abs(d).max() <= 0.1 + 1e-6 and np.abs(d).max() > 0.05
  assert np.asarray(x_adv).min() >= 0.0 and np.asarray(x_adv).max() <= 1.0
