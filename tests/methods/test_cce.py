"""CCE (Bui et al. 2021, AAAI) and its baselines ADV-EN / ADP (Pang et al. 2019): the loss against the spec's
hand example and closed forms (cce_tamoo.md A10), stop-gradient, permutation, the one-program member PGD,
reductions (ensemble of one = PGD-AT), the ADP log det against Pang et al.'s definition, train steps through
the engine, and the refusal of a single model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust import models
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods import cce, ensemble_baselines as eb, get_method
from jaxrobust.methods.adr import entropy
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.models.ensemble import Ensemble, member_variables
from jaxrobust.train.state import create_train_state
from jaxrobust.train.step import make_context, make_train_step

try:
  from tests.methods import method_harness as h
except ImportError:  # run from inside tests/methods
  import method_harness as h


def _probs_logits(p):
  return jnp.log(jnp.asarray(p, jnp.float64))


def _random(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * 2.0)


# ----------------------------------------------------------------------------------------
# The pure loss
# ----------------------------------------------------------------------------------------

def test_base_mode_is_clean_plus_own_adversarial_cross_entropy():
  with h.x64():
    clean, adv = _random(0, (3, 5, 4)), _random(1, (3, 3, 5, 4))
    y = jnp.asarray([0, 1, 2, 3, 1])
    got = cce.cce_member_losses(clean, adv, y, lambda_pm=0.0, lambda_dm=0.0)
    for n in range(3):
      expected = cce.member_cross_entropy(clean[n], y) + cce.member_cross_entropy(adv[n, n], y)
      np.testing.assert_allclose(got[n], expected, rtol=1e-12)
    # w_ce scales the direct (dPO) term only
    got0 = cce.cce_member_losses(clean, adv, y, lambda_pm=0.0, lambda_dm=0.0, w_ce=0.0)
    np.testing.assert_allclose(got0, cce.member_cross_entropy(clean, y), rtol=1e-12)


def test_hand_example_two_members():
  """Spec A10: M = 3, y = 0, p^1(x_a^2) = (0.2, 0.5, 0.3), lambda_pm = lambda_dm = 1: cross term -0.5019."""
  with h.x64():
    p = np.array([0.2, 0.5, 0.3])
    h_p = -np.sum(p * np.log(p))
    expected = 0.2 * -np.log(0.2) - 0.8 * h_p
    # the spec rounds its steps (0.3219 - 0.8 * 1.0297 = -0.50186); the exact value is -0.50183
    assert abs(expected - (-0.5019)) < 1e-4
    term = cce.cross_term(_probs_logits(p)[None], jnp.asarray([0]), lambda_pm=1.0, lambda_dm=1.0)
    np.testing.assert_allclose(term, [expected], rtol=1e-12)
    # inside the full loss, member 0's loss is its two CEs plus this one cross term (N - 1 = 1)
    clean = _random(2, (2, 1, 3))
    adv = _random(3, (2, 2, 1, 3)).at[0, 1].set(_probs_logits(p)[None])
    y = jnp.asarray([0])
    losses = cce.cce_member_losses(clean, adv, y, lambda_pm=1.0, lambda_dm=1.0)
    base = cce.cce_member_losses(clean, adv, y, lambda_pm=0.0, lambda_dm=0.0)
    np.testing.assert_allclose(losses[0] - base[0], [expected], rtol=1e-10)


def test_three_members_average_and_permutation():
  with h.x64():
    clean, adv = _random(4, (3, 6, 5)), _random(5, (3, 3, 6, 5))
    y = jnp.asarray([0, 1, 2, 3, 4, 0])
    kw = dict(lambda_pm=1.0, lambda_dm=2.0)
    got = cce.cce_member_losses(clean, adv, y, **kw)
    base = cce.cce_member_losses(clean, adv, y, lambda_pm=0.0, lambda_dm=0.0)
    for n in range(3):
      others = [cce.cross_term(adv[n, i], y, **kw) for i in range(3) if i != n]
      np.testing.assert_allclose(got[n] - base[n], 0.5 * (others[0] + others[1]), rtol=1e-10, atol=1e-12)
    perm = jnp.asarray([2, 0, 1])
    permuted = cce.cce_member_losses(clean[perm], adv[perm][:, perm], y, **kw)
    np.testing.assert_allclose(permuted, got[perm], rtol=1e-12)


def test_stop_gradient_equals_s_fed_back_as_a_constant():
  with h.x64():
    clean, adv = _random(6, (2, 4, 3)), _random(7, (2, 2, 4, 3))
    y = jnp.asarray([0, 2, 1, 0])
    s_const = cce.true_class_prob(adv, y)

    def with_constant_s(a):
      cross = 1.0 * s_const * cce.member_cross_entropy(a, y) - 5.0 * (1.0 - s_const) * entropy(a)
      off = (1.0 - jnp.eye(2))[:, :, None]
      return jnp.sum(cce.member_cross_entropy(clean, y) + cce.member_cross_entropy(a[jnp.arange(2), jnp.arange(2)], y)
                     + jnp.sum(cross * off, axis=1))

    def ours(a, stop_s=True):
      return jnp.sum(cce.cce_member_losses(clean, a, y, lambda_pm=1.0, lambda_dm=5.0, stop_gradient_s=stop_s))

    np.testing.assert_allclose(ours(adv), with_constant_s(adv), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(ours)(adv), jax.grad(with_constant_s)(adv), rtol=1e-10, atol=1e-12)
    # the code's form (no stop-gradient) has the same value and a different gradient
    no_stop = functools.partial(ours, stop_s=False)
    np.testing.assert_allclose(no_stop(adv), ours(adv), rtol=1e-12)
    assert not np.allclose(jax.grad(no_stop)(adv), jax.grad(ours)(adv))


def test_demoting_term_is_minimised_at_uniform():
  with h.x64():
    k = 5
    z = _random(8, (200, k))
    h_z = entropy(z)
    assert float(jnp.max(h_z)) <= np.log(k) + 1e-12
    uniform = jnp.zeros((1, k))
    np.testing.assert_allclose(entropy(uniform), [np.log(k)], rtol=1e-12)
    # pure DO (lambda_pm = 0) with s = p_y: -(1 - 1/K) log K at the uniform prediction, larger elsewhere
    do = lambda logits: cce.cross_term(logits, jnp.zeros(logits.shape[0], jnp.int32), lambda_pm=0.0, lambda_dm=1.0)
    assert np.all(np.asarray(-h_z) >= -np.log(k) - 1e-12)
    g = jax.grad(lambda a: jnp.sum(-entropy(a)))(uniform)
    np.testing.assert_allclose(g, 0.0, atol=1e-12)
    np.testing.assert_allclose(do(uniform), [-(1 - 1 / k) * np.log(k)], rtol=1e-12)


def test_code_faithful_terms_closed_form():
  """TF1 softmax_cross_entropy_with_logits_v2(labels, logits=p): ce = LSE(p) - p_y, 'H' = LSE(p) - sum p^2."""
  with h.x64():
    p = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])
    y = jnp.asarray([0, 2])
    lse = np.log(np.exp(p).sum(1))
    ce, ent = cce.code_double_softmax_terms(_probs_logits(p), y)
    np.testing.assert_allclose(ce, lse - p[[0, 1], [0, 2]], rtol=1e-12)
    np.testing.assert_allclose(ent, lse - (p * p).sum(1), rtol=1e-12)
    term = cce.cross_term(_probs_logits(p), y, lambda_pm=1.0, lambda_dm=5.0, stop_gradient_s=False,
                          code_faithful_terms=True)
    s = p[[0, 1], [0, 2]]
    np.testing.assert_allclose(term, s * (lse - s) - 5.0 * (1.0000001 - s) * (lse - (p * p).sum(1)), rtol=1e-12)


def test_code_faithful_loss_and_gradient_match_a_torch_transcription():
  """A float64 torch transcription of CCE:lib_method.py::adv_CCE (TF semantics, no stop-gradient)."""
  torch = pytest.importorskip("torch")
  n, b, k = 3, 4, 5
  rng = np.random.default_rng(9)
  clean, adv = 2 * rng.standard_normal((n, b, k)), 2 * rng.standard_normal((n, n, b, k))
  y = np.array([0, 3, 1, 4])
  wce, wpm, wdm = 1.0, 1.0, 2.0

  def torch_loss(clean_t, adv_t):
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y), k).double()
    nor_pred = torch.softmax(clean_t, -1)
    adv_pred = torch.softmax(adv_t, -1)  # [i, j] = member i on x_a^j

    def tf_sce(labels, logits):  # softmax_cross_entropy_with_logits_v2
      return -(labels * torch.log_softmax(logits, -1)).sum(-1)

    total = 0.0
    for i in range(n):
      loss_i = (-(onehot * torch.log(nor_pred[i])).sum(-1) - wce * (onehot * torch.log(adv_pred[i, i])).sum(-1)).mean()
      for j in range(n):
        if j == i:
          continue
        pij = adv_pred[i, j]
        w = (onehot * pij).sum(-1)
        ce = tf_sce(onehot, pij)
        cce_ = tf_sce(pij, pij)
        loss_i = loss_i - wdm / (n - 1) * (cce_ * (1.0000001 - w)).mean()
        loss_i = loss_i + wpm / (n - 1) * (ce * w).mean()
      total = total + loss_i
    return total

  ct = torch.tensor(clean, dtype=torch.float64, requires_grad=True)
  at = torch.tensor(adv, dtype=torch.float64, requires_grad=True)
  ref = torch_loss(ct, at)
  ref.backward()
  with h.x64():
    def ours(c, a):
      return jnp.mean(jnp.sum(cce.cce_member_losses(c, a, jnp.asarray(y), lambda_pm=wpm, lambda_dm=wdm, w_ce=wce,
                                                    stop_gradient_s=False, code_faithful_terms=True), axis=0))
    value, (gc, ga) = jax.value_and_grad(ours, argnums=(0, 1))(jnp.asarray(clean), jnp.asarray(adv))
  np.testing.assert_allclose(float(value), ref.item(), rtol=1e-12)
  np.testing.assert_allclose(gc, ct.grad.numpy(), rtol=1e-9, atol=1e-14)
  np.testing.assert_allclose(ga, at.grad.numpy(), rtol=1e-9, atol=1e-14)


def test_modes_and_overrides():
  assert cce.resolve_mode("rm", None, None, None) == (1.0, 1.0, 1.0)
  assert cce.resolve_mode("dm", None, None, None) == (0.0, 5.0, 0.0)
  assert cce.resolve_mode("base", None, None, None) == (0.0, 0.0, 1.0)
  assert cce.resolve_mode("dm", None, 2.0, 1.0) == (0.0, 2.0, 1.0)
  assert get_method("cce", mode="base", lambda_pm=1.0).hparams["lambda_pm"] == 1.0
  with pytest.raises(ValueError, match="mode"):
    get_method("cce", mode="nope")
  with pytest.raises(ValueError, match="attack_label"):
    get_method("cce", attack_label="y")
  with pytest.raises(ValueError, match="attack_label"):
    get_method("adv_en", attack_label="y")


def test_batch_threat_draws_one_eps_per_batch_in_range():
  assert cce.batch_threat(jax.random.key(0), 0.1, 0.02, None) == (0.1, 0.02)
  draws = [cce.batch_threat(jax.random.key(i), 0.1, 0.02, (0.01, 0.05)) for i in range(20)]
  eps = np.array([float(e) for e, _ in draws])
  assert np.all((eps >= 0.01) & (eps <= 0.05)) and len(set(eps)) == 20
  np.testing.assert_allclose([float(s) for _, s in draws], eps / 10, rtol=1e-6)
  with pytest.raises(ValueError, match="eps_range"):
    get_method("adp", eps_range=(0.05, 0.01))


def test_attack_labels():
  z = _random(11, (2, 4, 3))
  y = jnp.asarray([0, 1, 2, 0])
  np.testing.assert_array_equal(cce.attack_labels("label", z, y), np.broadcast_to(y, (2, 4)))
  np.testing.assert_array_equal(cce.attack_labels("prediction", z, y), np.argmax(z, -1))


# ----------------------------------------------------------------------------------------
# ADP against Pang et al.'s definition
# ----------------------------------------------------------------------------------------

def test_adp_log_det_and_entropy_match_pang_et_al():
  with h.x64():
    z = _random(12, (3, 4, 6))
    y = np.array([0, 5, 2, 2])
    p = np.asarray(jax.nn.softmax(z, -1))
    expected_det, expected_h = [], []
    for b in range(4):
      nonmax = np.delete(p[:, b], y[b], axis=1)                        # (M, K-1): the true class removed
      nonmax = nonmax / np.linalg.norm(nonmax, axis=1, keepdims=True)
      expected_det.append(np.linalg.slogdet(nonmax @ nonmax.T + 1e-6 * np.eye(3))[1])
      pen = p[:, b].mean(0)
      expected_h.append(-(pen * np.log(pen)).sum())
    got = eb.ensemble_diversity_log_det(z, jnp.asarray(y))
    np.testing.assert_allclose(got, expected_det, rtol=1e-9)
    reg = eb.adp_regulariser(z, jnp.asarray(y), alpha=2.0, beta=0.5)
    np.testing.assert_allclose(reg, -2.0 * np.array(expected_h) - 0.5 * np.array(expected_det), rtol=1e-9)
    # identical members span no volume: log det -> log of the offset's scale
    same = jnp.broadcast_to(z[:1], z.shape)
    assert float(jnp.max(eb.ensemble_diversity_log_det(same, jnp.asarray(y)))) < np.log(1e-5)


# ----------------------------------------------------------------------------------------
# Ensembles: member PGD, the ensemble of one, train steps, refusal of a single model
# ----------------------------------------------------------------------------------------

def _ensemble(m=2, layout="unrolled"):
  return Ensemble(member=h.TinyMLP(num_classes=10), num_members=m, layout=layout)


def _init(module, x, seed=0):
  return module.init(jax.random.key(seed), jnp.asarray(x[:2]))


@pytest.mark.parametrize("layout", ["unrolled", "vmap"])
def test_member_pgd_in_ball_and_equal_to_each_member_alone(layout):
  x, y = h.digits(16)
  module = _ensemble(3, layout)
  variables = _init(module, x)
  params, bs = variables["params"], variables["batch_stats"]
  ctx = make_context(module, jnp.asarray(0), 0, 10)
  key = jax.random.key(3)
  labels = jnp.stack([jnp.asarray(y), (jnp.asarray(y) + 1) % 10, jnp.asarray(y)])
  eps, kw = 8 / 255, dict(step_size=2 / 255, steps=3)
  x_adv = h.jit(lambda p, b, xx, ll, k: cce.member_pgd(ctx.member_forward, p, b, xx, ll, k, eps=eps, **kw))(
      params, bs, jnp.asarray(x), labels, key)
  assert x_adv.shape == (3,) + x.shape
  assert float(jnp.max(jnp.abs(x_adv - x[None]))) <= eps + 1e-6
  assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
  single = module.member
  for m in range(3):
    v = member_variables(variables, m)
    logits_fn = lambda xx, v=v: single.apply(v, xx, train=False)
    alone = h.jit(lambda xx, ll, k, f=logits_fn: pgd(f, xx, ll, k, eps=eps, **kw))(
        jnp.asarray(x), labels[m], jax.random.fold_in(key, m))
    np.testing.assert_allclose(x_adv[m], alone, atol=1e-6)
  # members attack different examples (they are different models)
  assert not np.allclose(x_adv[0], x_adv[2])


def test_ensemble_of_one_adv_en_is_pgd_at_two_term_loss():
  x, y = h.digits(16)
  module = _ensemble(1)
  variables = _init(module, x)
  single = module.member
  single_vars = member_variables(variables, 0)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  x_adv = jnp.clip(batch["image"] + 0.03 * jnp.sign(_random(13, x.shape)).astype(jnp.float32), 0, 1)

  def value_and_grad(method, mod, variables, unstack=lambda g: g):
    def run(params, bs):
      ctx = make_context(mod, jnp.asarray(0), 0, 10)
      return method.loss(params, bs, batch, x_adv, None, (), jax.random.key(0), ctx)[0]
    value, g = h.jit(jax.value_and_grad(run))(variables["params"], variables["batch_stats"])
    return value, unstack(g)

  v_en, g_en = value_and_grad(get_method("adv_en"), module, variables,
                              lambda g: member_variables({"params": g}, 0)["params"])
  v_at, g_at = value_and_grad(make_pgd_at(mix=0.5), single, single_vars)
  np.testing.assert_allclose(v_en, 2 * v_at, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 2 * b, rtol=2e-4, atol=1e-6), g_en, g_at)


def test_joint_forward_equals_per_batch_forwards_without_batch_norm():
  x, y = h.digits(8)
  module = models.get_model("mlp", 10, members=2, hidden_sizes=(16,), ensemble_layout="unrolled")
  variables = _init(module, x)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  x_adv = jnp.clip(batch["image"][None] + 0.03 * jnp.sign(_random(14, (2,) + x.shape)).astype(jnp.float32), 0, 1)

  def run(method):
    ctx = make_context(module, jnp.asarray(0), 0, 10)
    return h.jit(lambda p: method.loss(p, {}, batch, x_adv, None, (), jax.random.key(0), ctx)[0])(variables["params"])

  np.testing.assert_allclose(run(get_method("cce")), run(get_method("cce", joint_forward=True)), rtol=1e-5)


def _train(method, *, n_steps=8, members=2, n=64, lr=1e-2):
  return h.run_training(method, n_steps=n_steps, n=n, steps_per_epoch=100, lr=lr,
                        model=_ensemble(members), init=_init)


THREAT = dict(eps=8 / 255, step_size=2 / 255, steps=3)


@pytest.mark.parametrize("name,kw", [("cce", {}), ("cce", {"attack_label": "prediction", "mode": "dm"}),
                                     ("adv_en", {"eps_range": (0.01, 0.05)}), ("adp", {})])
def test_train_step_compiles_once_and_reduces_loss(name, kw):
  state0, state, metrics, step_fn = _train(get_method(name, **THREAT, **kw))
  h.assert_same_structure(state0, state)
  losses = np.array([float(m["loss"]) for m in metrics])
  assert np.all(np.isfinite(losses)), losses
  if kw.get("mode") != "dm":
    # DM's loss need not fall: with s a constant the step does not follow a potential, and pushing members
    # towards uniform on the others' examples lowers s, which raises the (1 - s) weight of the next step
    assert losses[-2:].mean() < losses[:2].mean(), losses
  for key in ("loss", "acc", "adv_acc"):
    assert key in metrics[-1]
  if name == "cce":
    assert {"adv_acc_member0", "adv_acc_member1"} <= set(metrics[-1])
  assert step_fn._cache_size() == 1
  # BN running statistics were updated by the train-mode forwards
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.batch_stats),
                                                   jax.tree.leaves(state0.batch_stats)))


@pytest.mark.parametrize("name", ["cce", "adv_en", "adp"])
def test_single_model_is_refused_with_the_fix(name):
  x, y = h.digits(8)
  module = h.TinyMLP(num_classes=10)
  tx = optax.adam(1e-3)
  state = create_train_state(module.init(jax.random.key(0), jnp.asarray(x[:2])), tx, jax.random.key(1))
  step_fn = make_train_step(module, get_method(name, **THREAT), tx, steps_per_epoch=1, num_classes=10)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y), "index": jnp.arange(8, dtype=jnp.int32)}
  with pytest.raises(ValueError, match=r"model\.members=2"):
    jax.eval_shape(step_fn, state, batch)


def test_prediction_label_attack_is_member_pgd_on_each_member_prediction():
  x, y = h.digits(16)
  module = _ensemble(2)
  variables = _init(module, x)
  params, bs = variables["params"], variables["batch_stats"]
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  method = get_method("cce", attack_label="prediction", **THREAT)

  def both(p, b, k):
    ctx = make_context(module, jnp.asarray(0), 0, 10)
    x_adv, _ = method.attack(p, b, batch, k, (), ctx)
    z = ctx.eval_forward(p, b, batch["image"]).member_logits
    ref = cce.member_pgd(ctx.member_forward, p, b, batch["image"], jnp.argmax(z, -1), k, **THREAT)
    return x_adv, ref, jnp.argmax(z, -1)

  x_adv, ref, pred = h.jit(both)(params, bs, jax.random.key(5))
  np.testing.assert_array_equal(x_adv, ref)
  assert not np.array_equal(pred[0], pred[1])  # the members predict differently, so the labels are per member


def test_heterogeneous_ensemble_attack_and_loss_shapes():
  x, y = h.digits(8)
  module = Ensemble(members=(h.TinyMLP(num_classes=10), models.get_model("mlp", 10, hidden_sizes=(8,))))
  variables = _init(module, x)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  method = get_method("cce", **THREAT)

  def run(p, b, k):
    ctx = make_context(module, jnp.asarray(0), 0, 10)
    x_adv, aux = method.attack(p, b, batch, k, (), ctx)
    return x_adv, method.loss(p, b, batch, x_adv, aux, (), k, ctx)

  x_adv, (loss, aux) = jax.eval_shape(run, variables["params"], variables["batch_stats"], jax.random.key(0))
  assert x_adv.shape == (2,) + x.shape and loss.shape == ()
  assert {"adv_acc_member0", "adv_acc_member1"} <= set(aux.metrics)
