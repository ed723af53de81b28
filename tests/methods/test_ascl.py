"""ASCL (Bui et al. 2021): selection masks and their subset relations, the contrastive loss against
Khosla et al.'s SupCon, its lower bound, invariances and masking, the VAT reductions, reductions to
PGD-AT / TRADES, and a short training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods import ascl, get_method
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.methods.trades import make_trades

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


def _pool(seed, n=10, d=6, classes=3, correct=0.6):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, size=n)
  pn = np.where(rng.random(n) < correct, y, rng.integers(0, classes, size=n))
  pa = np.where(rng.random(n) < correct, y, rng.integers(0, classes, size=n))
  z = rng.standard_normal((n, d))
  za = z + 0.3 * rng.standard_normal((n, d))
  return z, za, y, pn, pa


def _masks(y, pn, pa, strategy, cp=False):
  pos, illegal = ascl.selection_masks(jnp.asarray(y), jnp.asarray(pn), jnp.asarray(pa), strategy,
                                      counterpart_always_positive=cp)
  return np.asarray(pos), np.asarray(illegal)


def _negatives(pos, illegal):
  return ~(pos | illegal | np.eye(len(pos), dtype=bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_masks_partition_the_pool(seed):
  _, _, y, pn, pa = _pool(seed)
  pos, illegal = _masks(y, pn, pa, "global")
  neg = _negatives(pos, illegal)
  n2 = 2 * len(y)
  assert not np.any(np.diag(pos)) and not np.any(np.diag(neg)) and not np.any(illegal)
  np.testing.assert_array_equal(pos.astype(int) + neg + np.eye(n2, dtype=int), np.ones((n2, n2), int))
  np.testing.assert_array_equal(pos, pos.T)
  np.testing.assert_array_equal(pos.sum(1) + neg.sum(1), np.full(n2, n2 - 1))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_strategy_subset_relations(seed):
  _, _, y, pn, pa = _pool(seed, n=16)
  pos_all, ill_all = _masks(y, pn, pa, "global")
  neg_all = _negatives(pos_all, ill_all)
  masks = {s: _masks(y, pn, pa, s) for s in ("hard", "soft", "leaked", "merge")}
  negs = {s: _negatives(*m) for s, m in masks.items()}
  for s in ("hard", "soft", "merge"):
    np.testing.assert_array_equal(masks[s][0], pos_all)  # positives as global
  assert np.all(negs["hard"] <= neg_all) and np.all(negs["soft"] <= neg_all)
  assert np.all(masks["leaked"][0] <= pos_all)
  np.testing.assert_array_equal(negs["leaked"], negs["soft"])
  np.testing.assert_array_equal(negs["merge"], negs["hard"] | negs["soft"])
  for s, (pos, illegal) in masks.items():
    assert not np.any(pos & illegal), s
  # leaked: the legal set of anchor a is exactly {j != a: pred_j == pred_a}
  preds = np.r_[pn, pa]
  pos, illegal = masks["leaked"]
  legal = ~illegal & ~np.eye(len(preds), dtype=bool)
  np.testing.assert_array_equal(legal, (preds[:, None] == preds[None, :]) & ~np.eye(len(preds), dtype=bool))


def test_perfect_classifier_has_no_selected_negatives():
  _, _, y, _, _ = _pool(4)
  pos_all, _ = _masks(y, y, y, "global")
  for s in ("hard", "soft", "leaked"):
    pos, illegal = _masks(y, y, y, s)
    assert not np.any(_negatives(pos, illegal)), s
  np.testing.assert_array_equal(_masks(y, y, y, "leaked")[0], pos_all)


def test_counterpart_flag_only_matters_for_leaked_when_predictions_differ():
  y = np.array([0, 1, 1])
  pn, pa = np.array([0, 1, 1]), np.array([1, 1, 0])  # example 0 and 2 change prediction
  code, _ = _masks(y, pn, pa, "leaked", cp=False)
  thesis, thesis_illegal = _masks(y, pn, pa, "leaked", cp=True)
  assert not code[0, 3] and thesis[0, 3] and thesis[3, 0] and not thesis_illegal[0, 3]
  assert code[1, 4] and thesis[1, 4]  # prediction kept: a positive either way
  for s in ("global", "hard", "soft"):
    np.testing.assert_array_equal(_masks(y, pn, pa, s, cp=True)[0], _masks(y, pn, pa, s, cp=False)[0])


def _scl(z, za, y, pn, pa, **kw):
  return ascl.contrastive_loss(jnp.asarray(z), jnp.asarray(za), jnp.asarray(y), jnp.asarray(pn),
                               jnp.asarray(pa), **kw)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_global_cosine_equals_supervised_contrastive_loss(tau):
  """Khosla et al. 2020 SupConLoss (contrast_mode 'all', base_temperature = tau) on [z, z']."""
  z, za, y, pn, pa = _pool(5, n=12)
  with h.x64():
    got = float(_scl(z, za, y, pn, pa, strategy="global", tau=tau, distance="cosine").loss)
  np.testing.assert_allclose(got, ref.supcon_loss(np.stack([z, za], 1), y, tau), rtol=1e-6)


def test_lower_bound_log_num_positives():
  z, za, y, pn, pa = _pool(6, n=12)
  with h.x64():
    for s in ("global", "hard", "soft", "leaked"):
      t = _scl(z, za, y, pn, pa, strategy=s)
      has = np.asarray(t.num_pos) > 0
      assert np.all(np.asarray(t.per_anchor)[has] >= np.log(np.asarray(t.num_pos)[has]) - 1e-9), s
    # reached when the positives coincide with the anchor and there are no negatives (one class)
    y1 = np.zeros(4, int)
    zc = np.ones((4, 3))
    t = _scl(zc, zc, y1, y1, y1, strategy="global")
    np.testing.assert_allclose(np.asarray(t.per_anchor), np.log(7.0), rtol=1e-9)


def test_anchors_without_positives_contribute_zero_and_no_nan():
  y = np.array([0, 1, 2])
  pn = np.array([0, 1, 2])
  pa = np.array([1, 2, 0])  # every adversarial prediction differs: leaked rows lose their counterpart
  z, za = np.eye(3), np.eye(3)[::-1]
  with h.x64():
    t = _scl(z, za, y, pn, pa, strategy="leaked", counterpart_always_positive=False)
  assert np.all(np.asarray(t.num_pos) == 0)
  np.testing.assert_array_equal(np.asarray(t.per_anchor), 0.0)
  assert np.isfinite(float(t.loss))
  g = jax.grad(lambda a: ascl.contrastive_loss(a, jnp.asarray(za), jnp.asarray(y), jnp.asarray(pn),
                                               jnp.asarray(pa), strategy="leaked",
                                               counterpart_always_positive=False).loss)(jnp.asarray(z, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("strategy", ["hard", "soft", "leaked", "merge"])
def test_illegal_similarities_do_not_matter(strategy):
  _, _, y, pn, pa = _pool(7, n=10)
  pos, illegal = ascl.selection_masks(jnp.asarray(y), jnp.asarray(pn), jnp.asarray(pa), strategy)
  assert bool(jnp.any(illegal))
  logits = jnp.asarray(np.random.default_rng(0).standard_normal(pos.shape))
  noise = jnp.asarray(100.0 * np.random.default_rng(1).standard_normal(pos.shape))
  a = ascl.contrastive_from_logits(logits, pos, illegal)
  b = ascl.contrastive_from_logits(jnp.where(illegal, logits + noise, logits), pos, illegal)
  np.testing.assert_array_equal(np.asarray(a.per_anchor), np.asarray(b.per_anchor))


def test_invariances_scale_permutation_rotation():
  z, za, y, pn, pa = _pool(8, n=10)
  with h.x64():
    a = float(_scl(z, za, y, pn, pa, distance="linf", normalize=True).loss)
    b = float(_scl(3.0 * z, 3.0 * za, y, pn, pa, distance="linf", normalize=True).loss)
    p = np.random.default_rng(0).permutation(len(y))
    c = float(_scl(z[p], za[p], y[p], pn[p], pa[p], distance="linf", normalize=True).loss)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))
    d = float(_scl(z, za, y, pn, pa, distance="cosine").loss)
    e = float(_scl(z @ q, za @ q, y, pn, pa, distance="cosine").loss)
    f = float(_scl(z @ q, za @ q, y, pn, pa, distance="l2", normalize=True).loss)
    g = float(_scl(z, za, y, pn, pa, distance="l2", normalize=True).loss)
  np.testing.assert_allclose([b, c], [a, a], rtol=1e-9)
  np.testing.assert_allclose(e, d, rtol=1e-9)
  np.testing.assert_allclose(f, g, rtol=1e-9)


def test_masked_examples_are_out_of_the_pool():
  z, za, y, pn, pa = _pool(9, n=8)
  pad = lambda a, v: np.concatenate([a, np.full((2,) + a.shape[1:], v, a.dtype)])
  with h.x64():
    a = _scl(z, za, y, pn, pa)
    b = _scl(pad(z, 0.3), pad(za, -0.2), pad(y, 1), pad(pn, 1), pad(pa, 1), mask=jnp.asarray(np.r_[np.ones(8), 0, 0]))
  np.testing.assert_allclose(float(b.loss), float(a.loss), rtol=1e-10)
  np.testing.assert_allclose(float(b.mean_pos), float(a.mean_pos), rtol=1e-10)


def test_linf_gradient_under_jit_equals_eager():
  """jnp.max's gradient compares the operand with the max; XLA:CPU recomputed |h_a - h_j| of the
  normalised latents with other rounding under jit and the gradient was off by up to 2x (found
  against the ASCL code in tests/methods/test_adr_ascl_torch.py). The linf distance takes the argmax."""
  z, za, y, pn, pa = _pool(7, n=12, d=16)

  def loss(z, za):
    return ascl.contrastive_loss(z, za, jnp.asarray(y), jnp.asarray(pn), jnp.asarray(pa), strategy="global",
                                 tau=0.2, distance="linf", normalize=True).loss
  args = (jnp.asarray(z, jnp.float32), jnp.asarray(za, jnp.float32))
  eager = jax.grad(loss, argnums=(0, 1))(*args)
  jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))(*args)
  for a, b in zip(jitted, eager):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_masks_carry_no_gradient_to_logits():
  """Changing logits without changing the argmax leaves L_SCL unchanged; its gradient w.r.t. the
  logits is zero and w.r.t. the latents is not."""
  z_nat, y = h.random_logits(10, b=10, k=4)
  z_adv = z_nat + np.random.default_rng(3).standard_normal(z_nat.shape)
  zl = jnp.asarray(z_nat, jnp.float32)

  def scl_of(latent, logits):
    return ascl.contrastive_loss(latent, latent + 0.1, jnp.asarray(y), jnp.argmax(logits, -1),
                                 jnp.argmax(logits + 0.5, -1)).loss
  g_logits = jax.grad(scl_of, argnums=1)(zl, jnp.asarray(z_adv, jnp.float32))
  g_latent = jax.grad(scl_of, argnums=0)(zl, jnp.asarray(z_adv, jnp.float32))
  assert float(jnp.max(jnp.abs(g_logits))) == 0.0 and float(jnp.max(jnp.abs(g_latent))) > 0
  same_argmax = scl_of(zl, jnp.asarray(z_adv * 2.0, jnp.float32))
  np.testing.assert_allclose(float(same_argmax), float(scl_of(zl, jnp.asarray(z_adv, jnp.float32))), rtol=1e-6)


def test_vat_reductions():
  z_nat, y = h.random_logits(11, b=6, k=5)
  z_adv = z_nat + np.random.default_rng(4).standard_normal(z_nat.shape)
  with h.x64():
    kl = ref.kl_div_none(ref.log_softmax(z_adv), ref.softmax(z_nat)).sum(1)
    np.testing.assert_allclose(np.asarray(ascl.vat_kl(jnp.asarray(z_nat), jnp.asarray(z_adv))), kl, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(ascl.vat_kl(jnp.asarray(z_nat), jnp.asarray(z_adv), "elementmean")),
                               kl / 5, rtol=1e-10)
    assert float(jnp.max(jnp.abs(ascl.vat_kl(jnp.asarray(z_nat), jnp.asarray(z_nat))))) < 1e-12


def test_zero_weights_reduce_to_pgd_at_and_trades():
  z_nat, y = h.random_logits(12, b=10, k=5)
  z_adv = z_nat + np.random.default_rng(5).standard_normal(z_nat.shape)
  with h.x64():
    a, _ = h.call_loss(ascl.make_ascl(alpha=0.0, lambda_scl=0.0, lambda_vat=0.0), z_nat, z_adv, y)
    b, _ = h.call_loss(make_pgd_at(mix=1.0), z_nat, z_adv, y)
    c, _ = h.call_loss(ascl.make_ascl_trades(beta=6.0, lambda_scl=0.0), z_nat, z_adv, y)
    d, _ = h.call_loss(make_trades(beta=6.0), z_nat, z_adv, y)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-12)
  np.testing.assert_allclose(float(c), float(d), rtol=1e-12)


def test_total_is_the_weighted_sum_of_its_terms():
  z_nat, y = h.random_logits(13, b=10, k=5)
  z_adv = z_nat + np.random.default_rng(6).standard_normal(z_nat.shape)
  with h.x64():
    value, m = h.call_loss(ascl.make_ascl(alpha=0.5, lambda_scl=1.5, lambda_vat=2.0), z_nat, z_adv, y)
  m = {k: float(v) for k, v in m.items()}
  np.testing.assert_allclose(float(value), 0.5 * m["loss_natural"] + m["loss_robust"] + 1.5 * m["loss_scl"]
                             + 2.0 * m["loss_vat"], rtol=1e-10)
  assert 0 < m["scl_positives"] < 20 and m["scl_negatives"] >= 0


def test_bad_hyperparameters_are_refused():
  with pytest.raises(ValueError, match="strategy"):
    ascl.make_ascl(strategy="leaking")
  with pytest.raises(ValueError, match="normalize=True"):
    ascl.make_ascl(distance="l2")
  with pytest.raises(ValueError, match="normalize=False"):
    ascl.make_ascl(distance="cosine", normalize=True)
  with pytest.raises(ValueError, match="tau"):
    ascl.make_ascl(tau=0.0)
  with pytest.raises(ValueError, match="vat_reduction"):
    ascl.make_ascl(vat_reduction="mean")


@pytest.mark.parametrize("name,kw", [("ascl", {}), ("ascl", {"strategy": "global"}),
                                     ("ascl_trades", {"distance": "linf", "normalize": True})])
def test_ascl_trains_and_compiles_once(name, kw):
  method = get_method(name, eps=0.1, step_size=0.05, steps=2, **kw)
  h.check_training(method, n_steps=12)


@pytest.mark.parametrize("kind,dim", [("linear", 16), ("mlp", 8)])
def test_projection_head_feeds_the_contrastive_loss_only(kind, dim):
  """ASCL App. C.1: p(z) for the contrastive term, z for the classifier."""
  from jaxrobust.models import get_model, init_model
  x, y = h.digits(32)
  plain = get_model("mlp", hidden_sizes=(24,))
  proj = get_model("mlp", hidden_sizes=(24,), projection_head=kind, projection_dim=dim)
  v = init_model(proj, jax.random.key(0), x.shape[1:])
  assert "projection" in v["params"]
  out = proj.apply(v, jnp.asarray(x), return_features=True)
  assert out.projection.shape == (32, dim) and out.features.shape == (32, 24)
  bare = {"params": {k: p for k, p in v["params"].items() if k != "projection"}}
  np.testing.assert_array_equal(np.asarray(plain.apply(bare, jnp.asarray(x))), np.asarray(proj.apply(v, jnp.asarray(x))))
  assert plain.apply(bare, jnp.asarray(x), return_features=True).projection is None
  with pytest.raises(ValueError, match="projection_head"):
    get_model("mlp", projection_head="deep")

  method = ascl.make_ascl(eps=0.1, step_size=0.05, steps=1)
  ctx = h.identity_ctx()._replace(
      forward=lambda p, bs, xx: (proj.apply({"params": p}, xx, return_features=True), bs),
      eval_forward=lambda p, bs, xx: proj.apply({"params": p}, xx, return_features=True))
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  x_adv = jnp.clip(jnp.asarray(x) + 0.05, 0, 1)
  grads, metrics = jax.grad(lambda p: method.loss(p, {}, batch, x_adv, None, (), jax.random.key(0), ctx),
                            has_aux=True)(v["params"])
  a_nat = proj.apply(v, jnp.asarray(x), return_features=True)
  a_adv = proj.apply(v, x_adv, return_features=True)
  expected = ascl.contrastive_loss(a_nat.projection, a_adv.projection, jnp.asarray(y),
                                   jnp.argmax(a_nat.logits, -1), jnp.argmax(a_adv.logits, -1)).loss
  np.testing.assert_allclose(float(metrics.metrics["loss_scl"]), float(expected), rtol=1e-6)
  assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads["projection"]))) > 0


def test_contrastive_loss_refuses_mismatched_shapes():
  z = jnp.ones((4, 3))
  y = jnp.array([0, 1, 0, 1])
  with pytest.raises(ValueError, match="one shape"):
    ascl.contrastive_loss(z, jnp.ones((5, 3)), y, y, y)
  with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
    ascl.contrastive_loss(z, z, y[:3], y, y)
