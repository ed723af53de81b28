"""R-DIV (Bui et al. 2021a, ASCL section 2): closed forms, invariances, the two pool modes, empty pools,
minibatch averaging against a loop over the written formula, and the evaluator plug-in end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.evaluate.latent_divergence import (LatentDivergence, RDiv, anchor_divergences, class_divergences,
                                                  plot_latent_divergence, r_div)


def reference(z_clean, z_adv, y, pools="mixed", minibatch=128):
  """The paper's formulas, written as loops: pools inside each minibatch, anchors with an empty
  pool left out, per-minibatch means averaged over the minibatches that have any."""
  def d(a, b):
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

  plus, minus = [], []
  for start in range(0, len(y), minibatch):
    zc, za, yb = z_clean[start:start + minibatch], z_adv[start:start + minibatch], y[start:start + minibatch]
    p_anchor, m_anchor = [], []
    for i in range(len(yb)):
      pos, neg = [], []
      for j in range(len(yb)):
        if j == i:
          continue
        pool = [zc[j], za[j]] if pools == "mixed" else [za[j]]
        (pos if yb[j] == yb[i] else neg).extend(d(zc[i], z) for z in pool)
      if pos:
        p_anchor.append(np.mean(pos))
      if neg:
        m_anchor.append(np.mean(neg))
    if p_anchor:
      plus.append(np.mean(p_anchor))
    if m_anchor:
      minus.append(np.mean(m_anchor))
  dp, dm = np.mean(plus), np.mean(minus)
  return dp / dm, dp, dm


def _random(n=40, dim=6, classes=3, seed=0, noise=0.5):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, dim)).astype(np.float32)
  za = (z + noise * rng.normal(size=z.shape)).astype(np.float32)
  return z, za, rng.integers(0, classes, n)


# -------------------------------------------------------------------------------------------
# Closed forms
# -------------------------------------------------------------------------------------------

def test_identical_latents_within_class_give_d_plus_zero_and_orthogonal_classes_d_minus_one():
  e = np.eye(4, dtype=np.float32)
  y = np.array([0, 0, 0, 1, 1, 1])
  z = np.stack([e[0]] * 3 + [e[1]] * 3) * np.array([1, 2, 3, 1, 5, 7], np.float32)[:, None]  # lengths differ
  for pools in ("mixed", "adversarial"):
    r = r_div(z, z, y, pools=pools)
    assert isinstance(r, RDiv)
    assert float(r.d_plus) == pytest.approx(0.0, abs=1e-6)
    assert float(r.d_minus) == pytest.approx(1.0, abs=1e-6)
    assert float(r.ratio) == pytest.approx(0.0, abs=1e-6)


def test_adversarial_latents_in_the_opposite_direction_closed_form():
  # Clean latents: class c at e_c. Adversarial latent of every point: -e_c (cos -1 with its class).
  # Mixed pool of an anchor in a class of 3: 2 clean (d 0) + 2 adversarial (d 2): d+ = 1.
  # Negatives: e_other (d 1) and -e_other (d 1): d- = 1. Adversarial-only: d+ = 2, d- = 1.
  e = np.eye(3, dtype=np.float32)
  y = np.array([0, 0, 0, 1, 1, 1])
  z = e[y]
  r = r_div(z, -z, y, pools="mixed")
  assert (float(r.d_plus), float(r.d_minus), float(r.ratio)) == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)
  r = r_div(z, -z, y, pools="adversarial")
  assert (float(r.d_plus), float(r.d_minus), float(r.ratio)) == pytest.approx((2.0, 1.0, 2.0), abs=1e-6)


def test_own_counterpart_is_not_in_the_pool():
  # Only point 0's adversarial latent moves: anchor 0's own pair (j = i) is excluded, so with the
  # other members unmoved the anchors other than 0 see it, anchor 0 does not.
  z = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
  y = np.array([0, 0, 1, 1])
  za = z.copy()
  za[0] = [-1, 0]
  a = anchor_divergences(z, za, y, pools="adversarial")
  assert float(a.d_plus[0]) == pytest.approx(0.0, abs=1e-6)   # anchor 0 sees only z_1^T
  assert float(a.d_plus[1]) == pytest.approx(2.0, abs=1e-6)   # anchor 1 sees z_0^T = -e_0
  assert float(a.counterpart[0]) == pytest.approx(2.0, abs=1e-6)


def test_matches_the_written_formula_with_minibatch_averaging():
  # N = 300: minibatches of 128, 128 and 44, each weighing the same.
  z, za, y = _random(n=300, dim=8, classes=10, seed=1)
  for pools in ("mixed", "adversarial"):
    r = r_div(z, za, y, pools=pools)
    np.testing.assert_allclose([float(r.ratio), float(r.d_plus), float(r.d_minus)],
                               reference(z, za, y, pools), rtol=1e-5)
  # The average is over minibatches, not over all anchors at once: minibatch size matters.
  r_small = r_div(z, za, y, minibatch=50)
  np.testing.assert_allclose(float(r_small.d_plus), reference(z, za, y, "mixed", 50)[1], rtol=1e-5)
  whole = r_div(z, za, y, minibatch=300)
  np.testing.assert_allclose(float(whole.d_plus), reference(z, za, y, "mixed", 300)[1], rtol=1e-5)
  assert float(whole.d_plus) != pytest.approx(float(r_div(z, za, y).d_plus), abs=1e-7)


def test_minibatch_of_one_point_is_left_out_not_nan():
  # N = 129: the last minibatch is one point with empty pools and does not enter the average.
  z, za, y = _random(n=129, dim=5, classes=4, seed=2)
  r = r_div(z, za, y)
  head = r_div(z[:128], za[:128], y[:128])
  np.testing.assert_allclose(np.array(r), np.array(head), rtol=1e-6)
  assert np.isfinite(np.array(r)).all()


# -------------------------------------------------------------------------------------------
# Invariances and the pool flag
# -------------------------------------------------------------------------------------------

def test_invariant_to_positive_scaling_of_latents():
  z, za, y = _random(seed=3)
  base = np.array(r_div(z, za, y))
  for c in (1e-3, 0.5, 7.0, 1e3):
    np.testing.assert_allclose(np.array(r_div(c * z, c * za, y)), base, rtol=1e-5)
  # Per-vector scaling too: cosine distance ignores lengths.
  s = np.random.default_rng(0).uniform(0.1, 10, (len(y), 1)).astype(np.float32)
  np.testing.assert_allclose(np.array(r_div(s * z, s[::-1] * za, y)), base, rtol=1e-5)


def test_invariant_to_a_consistent_permutation_inside_a_minibatch():
  z, za, y = _random(n=200, dim=6, classes=5, seed=4)
  base = np.array(r_div(z, za, y))
  rng = np.random.default_rng(5)
  order = np.r_[rng.permutation(128), 128 + rng.permutation(72)]  # within each minibatch
  np.testing.assert_allclose(np.array(r_div(z[order], za[order], y[order])), base, rtol=1e-5)
  # An inconsistent permutation (z_adv rows shuffled against z_clean) changes nothing in the mixed
  # pools only if the classes still match: shuffling z_adv alone changes the numbers.
  assert not np.allclose(np.array(r_div(z, za[order], y)), base, rtol=1e-5)


def test_mixed_and_adversarial_pools_agree_when_adversarial_equals_clean_and_differ_otherwise():
  z, za, y = _random(seed=6)
  same = [np.array(r_div(z, z, y, pools=p)) for p in ("mixed", "adversarial")]
  np.testing.assert_allclose(same[0], same[1], rtol=1e-6)
  np.testing.assert_allclose(same[0], reference(z, z, y, "adversarial"), rtol=1e-5)
  mixed, adv = np.array(r_div(z, za, y, pools="mixed")), np.array(r_div(z, za, y, pools="adversarial"))
  assert not np.allclose(mixed, adv, rtol=1e-3)
  # mixed pool = clean half + adversarial half: d+ mixed is the mean of the clean-only and adv-only d+
  # for every anchor (equal counts), hence also after averaging.
  clean_only = anchor_divergences(z, z, y, pools="adversarial")
  adv_only = anchor_divergences(z, za, y, pools="adversarial")
  mixed_a = anchor_divergences(z, za, y, pools="mixed")
  np.testing.assert_allclose(mixed_a.d_plus, (clean_only.d_plus + adv_only.d_plus) / 2, atol=1e-6)


def test_single_member_class_gives_no_nan():
  z, za, _ = _random(n=12, dim=4, seed=7)
  y = np.array([0] * 6 + [1] * 5 + [2])  # class 2 has one member: no positive pool for it
  a = anchor_divergences(z, za, y)
  assert not bool(a.has_plus[-1]) and bool(a.has_minus[-1])
  for pools in ("mixed", "adversarial"):
    r = r_div(z, za, y, pools=pools)
    assert np.isfinite(np.array(r)).all()
    np.testing.assert_allclose(np.array(r), reference(z, za, y, pools), rtol=1e-5)
  per_class = class_divergences(z, za, y)
  assert np.isnan(per_class["within"][2]) and np.isfinite(per_class["between"][2])
  # One class only: no negatives anywhere, an honest NaN for d_minus and the ratio.
  r = r_div(z, za, np.zeros(12, int))
  assert np.isfinite(float(r.d_plus)) and np.isnan(float(r.d_minus)) and np.isnan(float(r.ratio))


def test_zero_latent_has_distance_one_and_no_nan():
  z = np.array([[1, 0], [0, 0], [0, 1], [0, 2]], np.float32)
  y = np.array([0, 0, 1, 1])
  a = anchor_divergences(z, z, y, pools="adversarial")
  assert float(a.d_plus[0]) == pytest.approx(1.0) and np.isfinite(np.array(r_div(z, z, y))).all()


def test_jittable_and_bad_arguments_raise():
  z, za, y = _random(seed=8)
  jitted = jax.jit(r_div, static_argnames=("pools", "minibatch"))
  np.testing.assert_allclose(np.array(jitted(z, za, y, pools="adversarial", minibatch=16)),
                             np.array(r_div(z, za, y, pools="adversarial", minibatch=16)), rtol=1e-6)
  with pytest.raises(ValueError, match="pools must be one of"):
    r_div(z, za, y, pools="adv")
  with pytest.raises(ValueError, match="minibatch"):
    r_div(z, za, y, minibatch=0)
  with pytest.raises(ValueError, match="z_clean and z_adv"):
    r_div(z, za[:5], y)
  with pytest.raises(ValueError, match="y must be"):
    r_div(z, za, y[:5])


def test_plot_writes_a_png(tmp_path):
  z, za, y = _random(n=60, dim=6, classes=3, seed=9)
  path = plot_latent_divergence(z, za, y, str(tmp_path / "sub" / "rdiv.png"), title="t")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# -------------------------------------------------------------------------------------------
# The evaluator plug-in, end to end on the shipped digits
# -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp_digits():
  """get_model('mlp') trained briefly on the shipped digits, its logits and features applies."""
  import optax
  from jaxrobust.data import load_dataset
  from jaxrobust.models import get_model, init_model, make_apply, make_features_apply
  train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
  module = get_model("mlp", 10, hidden_sizes=(32,))
  v = init_model(module, jax.random.PRNGKey(0), (8, 8, 1))
  apply = make_apply(module, microbatch=None)
  x, y = jnp.asarray(train.as_float()), jnp.asarray(train.labels)
  opt = optax.adam(0.01)
  st = opt.init(v["params"])

  @jax.jit
  def step(p, st):
    g = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(apply({"params": p}, x), y).mean())(p)
    u, st = opt.update(g, st)
    return optax.apply_updates(p, u), st

  p = v["params"]
  for _ in range(60):
    p, st = step(p, st)
  return module, apply, make_features_apply(module, microbatch=None), {"params": p}, test


SPECS = [{"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.03},
         {"name": "fgsm", "label": "fgsm", "eps": 0.1, "max_examples": 200}]


def test_evaluator_r_div_from_the_same_attack_run_and_other_numbers_unchanged(mlp_digits, tmp_path):
  from jaxrobust.evaluate.robust import DEFAULT_METRICS, RobustEvaluator
  module, apply, features_apply, v, test = mlp_digits
  plain = RobustEvaluator(apply).evaluate(v, test, SPECS, batch_size=100, progress=False)
  ev = RobustEvaluator(apply, features_apply=features_apply)
  metric = LatentDivergence(plot=str(tmp_path / "rdiv.png"))
  r = ev.evaluate(v, test, SPECS, batch_size=100, progress=False, keep_adversarials=True,
                  metrics=[*DEFAULT_METRICS, metric])
  # every number the default metrics report is bit-identical with the features pass added
  for k in ("n", "clean_acc", "robust_acc", "worst_case_acc", "n_worst", "n_attacked", "attacks"):
    assert r[k] == plain[k], k
  assert r["clean_acc"] > 0.8 and r["robust_acc"]["pgd"] < r["clean_acc"]
  # the latents are those of the same x_adv the accuracies scored
  x = jnp.asarray(test.as_float())
  for label, m in (("pgd", len(test)), ("fgsm", 200)):
    e = r["r_div"][label]
    assert e["n"] == m and e["pools"] == "mixed" and e["minibatch"] == 128
    z_clean = np.asarray(features_apply(v, x[:m]).features)
    z_adv = np.asarray(features_apply(v, jnp.asarray(r["adversarials"][label])).features)
    order = np.random.default_rng(0).permutation(m)  # shuffle_seed=0
    want = r_div(z_clean[order], z_adv[order], test.labels[:m][order])
    np.testing.assert_allclose([e["ratio"], e["d_plus"], e["d_minus"]], np.array(want), rtol=1e-4)
    assert 0 < e["d_plus"] < e["d_minus"]  # a trained model separates its classes
    assert len(e["per_class"]["class"]) == 10 and sum(e["per_class"]["n"]) == m
    with open(e["plot"], "rb") as f:
      assert f.read(4) == b"\x89PNG"
  assert r["r_div"]["pgd"]["plot"].endswith("rdiv_pgd.png")
  json.dumps(r["r_div"])  # JSON-ready
  # adversarial-only pools on one attack, its latents alone kept
  p = ev.points(v, test, SPECS, batch_size=100, progress=False, features=("fgsm",))
  assert set(p.adv_features) == {"fgsm"} and p.clean_features.shape == (len(test), 32)
  adv_only = LatentDivergence("fgsm", pools="adversarial", shuffle_seed=None)(p)["r_div"]["fgsm"]
  want = r_div(p.clean_features[:200], p.adv_features["fgsm"], p.labels[:200], pools="adversarial")
  np.testing.assert_allclose([adv_only["ratio"], adv_only["d_plus"]], np.array(want)[:2], rtol=1e-6)


def test_evaluator_without_a_features_apply_names_the_fix(mlp_digits):
  from jaxrobust.evaluate.robust import RobustEvaluator
  module, apply, _, v, test = mlp_digits
  with pytest.raises(ValueError, match="make_features_apply"):
    RobustEvaluator(apply).evaluate(v, test, SPECS[:1], progress=False, metrics=[LatentDivergence()])
  with pytest.raises(TypeError, match="make_features_apply"):  # a logits-only apply given as features apply
    RobustEvaluator(apply, features_apply=apply).evaluate(v, test.take(50), SPECS[:1], progress=False,
                                                          metrics=[LatentDivergence()])
  ev = RobustEvaluator(apply, features_apply=_features_of(module))
  with pytest.raises(ValueError, match="at least one attack"):
    ev.evaluate(v, test.take(50), [], progress=False, metrics=[LatentDivergence()])
  with pytest.raises(ValueError, match="not in this evaluation"):
    ev.evaluate(v, test.take(50), SPECS[:1], progress=False, metrics=[LatentDivergence("nope")])
  with pytest.raises(ValueError, match="pools must be one of"):
    LatentDivergence(pools="clean")


def _features_of(module):
  from jaxrobust.models import make_features_apply
  return make_features_apply(module, microbatch=None)
