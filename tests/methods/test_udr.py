"""UDR-PGD/-TRADES/-MART/-AWP-AT (Bui et al. 2022, eqs. 16-20, Algorithm 1): losses against NumPy, the lambda update
against a transcription of the code's list logic, the reduction to PGD-AT, and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods import get_method
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.methods.registry import switch_method
from jaxrobust.methods.udr import (batch_index_in_epoch, init_lambda_state, lambda_update, make_udr_awp_at,
                                   make_udr_mart, make_udr_pgd, make_udr_trades)

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _logits(seed):
  z_nat, y = h.random_logits(seed)
  return z_nat, z_nat + 1.5 * np.random.default_rng(seed + 10).standard_normal(z_nat.shape), y


def _udr_loss(method, z_nat, z_adv, y, *, lam=0.7, dis=0.01, step=0):
  """method.loss on the identity context (logits = w * input) with a UDR state and attack aux."""
  k = np.shape(z_nat)[1]

  def run(z_nat, z_adv, y):
    ctx = h.identity_ctx(0.0, k)._replace(step=jnp.asarray(step, jnp.int32))
    state = dict(init_lambda_state(lam))
    value, aux = method.loss({"w": jnp.asarray(1.0, z_nat.dtype)}, {}, h.logits_batch(z_nat, y), z_adv,
                             {"dis": jnp.asarray(dis, jnp.float32)}, state, jax.random.key(0), ctx)
    return value, aux.metrics, aux.method_state

  return h.jit(run)(jnp.asarray(z_nat), jnp.asarray(z_adv), jnp.asarray(y, jnp.int32))


@pytest.mark.parametrize("beta,natural", [(1.0, 1.0), (2.0, 1.0), (1.0, 0.0)])
def test_udr_pgd_loss(beta, natural):
  z_nat, z_adv, y = _logits(0)
  with h.x64():
    value, metrics, _ = _udr_loss(make_udr_pgd(beta=beta, natural=natural), z_nat, z_adv, y)
  expected = natural * ref.cross_entropy(z_nat, y).mean() + beta * ref.cross_entropy(z_adv, y).mean()
  np.testing.assert_allclose(float(value), expected, rtol=1e-12)
  assert ("acc" in metrics) == (natural > 0) and "adv_acc" in metrics


@pytest.mark.parametrize("beta", [6.0, 1.0, 0.0])
def test_udr_trades_loss_is_trades_on_the_soft_ball_point(beta):
  z_nat, z_adv, y = _logits(1)
  with h.x64():
    value, metrics, _ = _udr_loss(make_udr_trades(beta=beta), z_nat, z_adv, y)
  total, natural, robust = ref.trades_loss(z_nat, z_adv, y, beta)
  np.testing.assert_allclose(float(value), total, rtol=1e-12)
  np.testing.assert_allclose(float(metrics["loss_robust"]), robust, rtol=1e-12)


@pytest.mark.parametrize("form,bce_on", [("paper", "nat"), ("code", "adv")])
def test_udr_mart_loss_forms(form, bce_on):
  z_nat, z_adv, y = _logits(2)
  with h.x64():
    value, metrics, _ = _udr_loss(make_udr_mart(beta=5.0, loss_form=form), z_nat, z_adv, y)
  total, bce, robust = ref.mart_loss(z_nat, z_adv, y, 5.0, bce_on=bce_on)
  np.testing.assert_allclose(float(value), total, rtol=1e-12)
  np.testing.assert_allclose(float(metrics["loss_bce"]), bce, rtol=1e-12)


def _code_lambda_trajectory(dis_values, batch_indices, *, eps, lam_lr, period, lam_init, clamp):
  """The UDR code's loop: append dis; if i % period == 0: lam -= lr (eps - mean(list)); clear."""
  lam, window, out = lam_init, [], []
  for d, i in zip(dis_values, batch_indices):
    window.append(d)
    if i % period == 0:
      lam = lam - lam_lr * (eps - float(np.mean(window)))
      if clamp:
        lam = max(lam, 0.0)
      window = []
    out.append(lam)
  return np.asarray(out)


@pytest.mark.parametrize("clamp", [True, False])
def test_u5_lambda_update_matches_the_code_loop(clamp):
  eps, lr, period, spe = 8 / 255, 0.5, 10, 23       # 23 batches per epoch: windows straddle epochs
  rng = np.random.default_rng(0)
  dis = rng.uniform(0.0, 0.8 * eps, 70)              # mean |delta| < eps: lam must go down
  dis[40:50] = 1.5 * eps                              # a stretch above eps: lam must go up
  steps = np.arange(70)
  indices = steps % spe
  expected = _code_lambda_trajectory(dis, indices, eps=eps, lam_lr=lr, period=period, lam_init=0.05,
                                     clamp=clamp)
  update = jax.jit(lambda s, d, i: lambda_update(s, d, i, eps=eps, lam_lr=lr, period=period, clamp=clamp))
  state, got = init_lambda_state(0.05), []
  for d, i in zip(dis, indices):
    state = update(state, jnp.float32(d), jnp.int32(i))
    got.append(float(state["lam"]))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  if clamp:
    assert min(got) >= 0.0 and min(got) == 0.0       # the clamp was needed and held
  else:
    assert min(got) < 0.0                             # the code's unclamped lambda goes negative
  # i = 0 fires (with a window of one); the update lowers lam while mean dis < eps.
  s1 = lambda_update(init_lambda_state(1.0), 0.01, 0, eps=eps, lam_lr=0.02, period=10)
  assert float(s1["lam"]) == pytest.approx(1.0 - 0.02 * (eps - 0.01)) and float(s1["dis_count"]) == 0
  s2 = lambda_update(init_lambda_state(1.0), 0.5, 3, eps=eps, lam_lr=0.02, period=10)
  assert float(s2["lam"]) == 1.0 and float(s2["dis_count"]) == 1 and float(s2["dis_sum"]) == pytest.approx(0.5)


def test_batch_index_is_within_the_epoch():
  ctx = h.identity_ctx()._replace(step=jnp.asarray(47, jnp.int32), steps_per_epoch=20)
  assert int(batch_index_in_epoch(ctx)) == 7
  assert int(batch_index_in_epoch(ctx._replace(steps_per_epoch=0))) == 47


def test_loss_returns_updated_lambda_and_reports_it():
  z_nat, z_adv, y = _logits(3)
  method = make_udr_trades(lam_lr=0.1, lam_period=1)
  _, metrics, state = _udr_loss(method, z_nat, z_adv, y, lam=0.7, dis=0.01)
  assert float(metrics["udr_lambda"]) == pytest.approx(0.7)          # the lambda the attack used
  assert float(state["lam"]) == pytest.approx(0.7 - 0.1 * (8 / 255 - 0.01), rel=1e-6)


def test_lambda_one_without_updates_reduces_to_pgd_at():
  """lam fixed at 1 (lam_lr 0), tau = alpha, no natural term: PGD-AT's attack point, loss and gradient."""
  from jaxrobust.train.step import make_context
  kw = dict(eps=0.1, step_size=0.03, steps=3)
  udr, base = make_udr_pgd(natural=0.0, lam_lr=0.0, **kw), make_pgd_at(mix=1.0, init="uniform", **kw)
  model = h.TinyMLP()
  x, y = h.digits(32)
  variables = model.init(jax.random.key(0), jnp.asarray(x))
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}

  def run(method, state):
    ctx = make_context(model, jnp.asarray(0, jnp.int32), 10, 10)
    x_adv, aux = method.attack(variables["params"], variables["batch_stats"], batch, jax.random.key(5), state, ctx)
    loss = lambda p: method.loss(p, variables["batch_stats"], batch, x_adv, aux, state, jax.random.key(6), ctx)
    (value, loss_aux), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    return x_adv, value, grads, loss_aux.method_state

  xa_u, v_u, g_u, st_u = h.jit(lambda st: run(udr, st))(init_lambda_state(1.0))
  xa_p, v_p, g_p, _ = h.jit(lambda st: run(base, st))(())
  np.testing.assert_allclose(xa_u, xa_p, atol=1e-6, rtol=0)
  np.testing.assert_allclose(float(v_u), float(v_p), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_u), jax.tree.leaves(g_p)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert float(st_u["lam"]) == 1.0


@pytest.mark.parametrize("name", ["udr_pgd", "udr_trades", "udr_mart", "udr_awp_at"])
def test_train_step_udr(name):
  method = get_method(name, eps=0.1, step_size=0.03, steps=2, lam_lr=0.5, lam_period=1)
  _, state, metrics = h.check_training(method)
  lams = [float(m["udr_lambda"]) for m in metrics]
  # The attack stays (on average per pixel) well inside eps, so lam falls every step until the clamp.
  assert lams[0] == 1.0 and lams[-1] < lams[0] and min(lams) >= 0.0
  assert all(b <= a for a, b in zip(lams, lams[1:]))
  assert 0 < float(metrics[-1]["udr_distance"]) <= 0.1


def test_udr_awp_at_defaults_and_state():
  m = make_udr_awp_at()
  assert m.name == "udr_awp_at" and m.hparams["natural"] == 0.0 and m.hparams["lam_lr"] == 0.001
  assert m.hparams["gamma"] == 0.01 and m.hparams["base"] == "udr_pgd"
  assert set(m.init_state(None)) == {"lam", "dis_sum", "dis_count"}


@pytest.mark.parametrize("kw", [dict(lam_init=-1.0), dict(lam_lr=-0.1), dict(lam_period=0), dict(tau=0.0),
                                dict(lam_distance="l7"), dict(norm="l2"), dict(beta=-1.0), dict(eps=-0.1)])
def test_rejects_bad_hyperparameters(kw):
  for factory in (make_udr_pgd, make_udr_trades, make_udr_mart, make_udr_awp_at):
    with pytest.raises(ValueError):
      factory(**kw)
  with pytest.raises(ValueError, match="loss_form"):
    make_udr_mart(loss_form="thesis")
  with pytest.raises(ValueError, match="period"):
    lambda_update(init_lambda_state(1.0), 0.1, 0, eps=0.1, lam_lr=0.1, period=0)
  with pytest.raises(ValueError, match="lam_lr"):
    lambda_update(init_lambda_state(1.0), 0.1, 0, eps=0.1, lam_lr=-0.1, period=1)


def test_registry_and_switch_method_keep_the_threat_model():
  section, dropped = switch_method({"name": "trades", "eps": 0.3, "step_size": 0.01, "steps": 40, "beta": 1.0},
                                   "udr_trades")
  assert section == {"name": "udr_trades", "eps": 0.3, "step_size": 0.01, "steps": 40} and dropped == ["beta"]
  m = get_method(**section)
  assert m.hparams["eps"] == 0.3 and m.hparams["beta"] == 6.0 and m.hparams["craft_loss"] == "kl"


@pytest.mark.slow  # ~25 s under load: a short training run
def test_wrm_trains_and_reduces_to_erm_without_ascent():
  from jaxrobust.methods.standard import make_standard
  from jaxrobust.train.step import make_context
  method = get_method("wrm", gamma=2.0, step_size=0.05, steps=3)
  assert method.hparams == {"gamma": 2.0, "step_size": 0.05, "steps": 3}
  _, _, metrics, step_fn = h.run_training(method)
  losses = np.array([float(m["loss"]) for m in metrics])
  assert np.all(np.isfinite(losses)) and losses[-3:].mean() < losses[:3].mean(), losses
  assert step_fn._cache_size() == 1
  # steps = 0: x* = x, so the loss is the clean cross-entropy of standard training.
  model = h.TinyMLP()
  x, y = h.digits(16)
  variables = model.init(jax.random.key(0), jnp.asarray(x))
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  ctx = make_context(model, jnp.asarray(0, jnp.int32), 10, 10)
  values = []
  for m in (get_method("wrm", steps=0), make_standard()):
    x_adv, aux = m.attack(variables["params"], variables["batch_stats"], batch, jax.random.key(1), (), ctx) \
        if m.attack is not None else (batch["image"], {})
    values.append(float(m.loss(variables["params"], variables["batch_stats"], batch, x_adv, aux, (),
                               jax.random.key(2), ctx)[0]))
  np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
  with pytest.raises(ValueError, match="gamma"):
    get_method("wrm", gamma=-1.0)
