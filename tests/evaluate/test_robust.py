"""Evaluator properties: bounds, every point counted, eps=0, monotone in eps, one compile per spec."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust.attacks.pgd import pgd
from jaxrobust.data import ArrayDataset, load_dataset
from jaxrobust.evaluate.robust import RobustEvaluator, format_table, robust_accuracy_curve


@pytest.fixture(scope="module")
def linear_digits():
  """A softmax-regression model trained on the shipped digits (undefended, ~95% clean)."""
  train = load_dataset("digits", "train")
  test = load_dataset("digits", "test")
  x, y = jnp.asarray(train.as_float()).reshape(len(train), -1), jnp.asarray(train.labels)

  def apply(v, xb):
    return xb.reshape(xb.shape[0], -1) @ v["w"] + v["b"]

  v = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  opt = optax.adam(0.05)
  st = opt.init(v)

  @jax.jit
  def step(v, st):
    g = jax.grad(lambda v: optax.softmax_cross_entropy_with_integer_labels(apply(v, x), y).mean())(v)
    u, st = opt.update(g, st)
    return optax.apply_updates(v, u), st

  for _ in range(200):
    v, st = step(v, st)
  return apply, v, test


def test_clean_and_robust_bounds_and_all_points_counted(linear_digits):
  apply, v, test = linear_digits
  ev = RobustEvaluator(apply)
  attacks = [{"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 10, "step_size": 0.025},
             {"name": "fgsm", "label": "fgsm", "eps": 0.1}]
  r = ev.evaluate(v, test, attacks, batch_size=100, progress=False)  # 359 points: last batch padded
  assert r["n"] == len(test) == 359
  pred = np.asarray(jnp.argmax(apply(v, jnp.asarray(test.as_float())), -1))
  assert r["clean_acc"] == pytest.approx(np.mean(pred == test.labels))
  assert r["clean_acc"] > 0.9
  for l in ("pgd", "fgsm"):
    assert r["robust_acc"][l] <= r["clean_acc"]
  assert r["worst_case_acc"] <= min(r["robust_acc"].values())
  assert "| model | clean | pgd | fgsm | worst case |" in format_table({"m": r})


def test_matches_direct_attack_call(linear_digits):
  apply, v, test = linear_digits
  spec = {"name": "pgd", "label": "p", "eps": 0.08, "steps": 5, "step_size": 0.03, "init": "none"}
  r = RobustEvaluator(apply).evaluate(v, test, [spec], batch_size=512, progress=False, keep_adversarials=True)
  x, y = jnp.asarray(test.as_float()), jnp.asarray(test.labels)
  x_adv = pgd(lambda xx: apply(v, xx), x, y, jax.random.PRNGKey(0), eps=0.08, step_size=0.03, steps=5, init="none")
  np.testing.assert_allclose(r["adversarials"]["p"], np.asarray(x_adv), atol=1e-6)
  direct = np.mean((np.argmax(apply(v, x_adv), -1) == test.labels) & (np.argmax(apply(v, x), -1) == test.labels))
  assert r["robust_acc"]["p"] == pytest.approx(direct)


def test_eps_zero_gives_clean_accuracy_and_curve_is_monotone_with_one_compile(linear_digits):
  apply, v, test = linear_digits
  ev = RobustEvaluator(apply)
  spec = {"name": "pgd", "steps": 10, "step_size_ratio": 0.25, "init": "none"}
  curve = robust_accuracy_curve(ev, v, test, spec, [0.0, 0.02, 0.05, 0.1, 0.2, 0.5], batch_size=512, progress=False)
  accs = curve["robust_acc"]
  clean = ev.evaluate(v, test, [], batch_size=512, progress=False)["clean_acc"]
  assert accs[0] == pytest.approx(clean)
  assert all(a >= b for a, b in zip(accs, accs[1:])), accs
  assert accs[-1] == 0.0  # an undefended model falls to 0 at a large eps
  assert len(ev._attacks) == 1
  assert next(iter(ev._attacks.values()))._cache_size() == 1  # eps is traced: one program for the sweep


def test_bad_specs_raise(linear_digits):
  apply, v, test = linear_digits
  ev = RobustEvaluator(apply)
  with pytest.raises(ValueError, match="eps"):
    ev.evaluate(v, test, [{"name": "pgd", "eps": -0.1, "steps": 1}], progress=False)
  with pytest.raises(ValueError, match="unknown attack"):
    ev.evaluate(v, test, [{"name": "nope", "eps": 0.1}], progress=False)
  with pytest.raises(ValueError, match="unique"):
    ev.evaluate(v, test, [{"name": "fgsm", "label": "a", "eps": 0.1}, {"name": "pgd", "label": "a", "eps": 0.1}],
                progress=False)


def test_gradient_masking_checks(linear_digits):
  from jaxrobust.evaluate import checks
  apply, v, test = linear_digits
  x, y = jnp.asarray(test.as_float()[:64]), jnp.asarray(test.labels[:64])
  clean = checks.run_checks(apply, v, x, y)
  assert not any(c["flagged"] for c in clean), clean
  # A softmax at the end: flagged as probabilities.
  probs = lambda vv, xx: jax.nn.softmax(apply(vv, xx))
  assert checks.probabilities(probs, v, x)["flagged"]
  # A step function (argmax one-hot * 10): zero gradients everywhere.
  step = lambda vv, xx: 10.0 * jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(apply(vv, xx)), -1), 10)
  assert checks.zero_gradients(step, v, x, y)["value"] == 1.0
  # A randomised model (fresh noise each call through a stateful numpy RNG).
  rng = np.random.default_rng(0)
  noisy = lambda vv, xx: apply(vv, xx) + jnp.asarray(rng.normal(size=(xx.shape[0], 10)), jnp.float32)
  assert checks.randomized(noisy, v, x)["flagged"]
  bb = checks.black_box_beats_white_box({"pgd": 0.5, "square": 0.3}, ["square"], ["pgd"])
  assert bb["flagged"] and bb["value"] == pytest.approx(0.2)
  assert not checks.black_box_beats_white_box({"pgd": 0.3, "square": 0.5}, ["square"], ["pgd"])["flagged"]


def test_single_logit_model_reports_robust_ap_equal_to_sklearn():
  from sklearn.metrics import average_precision_score
  train = load_dataset("digits", "test")
  data = ArrayDataset(train.images, (train.labels == 3).astype(np.int32), 2, "digits3")
  rng = np.random.default_rng(0)
  v = {"w": jnp.asarray(rng.normal(size=(64, 1)), jnp.float32), "b": jnp.zeros(1)}
  apply = lambda vv, xb: xb.reshape(xb.shape[0], -1) @ vv["w"] + vv["b"]  # (B, 1) single logit
  spec = {"name": "pgd", "label": "p", "eps": 0.05, "steps": 3, "step_size": 0.02, "loss": "bce",
          "init": "none"}
  r = RobustEvaluator(apply).evaluate(v, data, [spec], batch_size=100, progress=False, keep_adversarials=True)
  x = jnp.asarray(data.as_float())
  clean_scores = np.asarray(apply(v, x))[:, 0]
  adv_scores = np.asarray(apply(v, jnp.asarray(r["adversarials"]["p"])))[:, 0]
  assert r["clean_ap"] == pytest.approx(average_precision_score(data.labels, clean_scores), abs=1e-9)
  assert r["robust_ap"]["p"] == pytest.approx(average_precision_score(data.labels, adv_scores), abs=1e-9)
  assert r["robust_ap"]["p"] < r["clean_ap"]  # the BCE attack pushes positives down, negatives up
  assert "clean AP" in format_table({"m": r})


def test_per_attack_max_examples(linear_digits):
  # An attack limited to the first m points (AutoAttack on 1000 images in MAIL's / UDR's code): its accuracy is
  # over exactly those points, the worst case over the points every attack saw, the others over all points.
  apply, v, test = linear_digits
  full = {"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.03, "init": "none"}
  short = dict(full, label="pgd-150", max_examples=150)
  ev = RobustEvaluator(apply)
  r = ev.evaluate(v, test, [full, short], batch_size=64, progress=False, keep_adversarials=True)
  assert r["n"] == 359 and r["n_attacked"] == {"pgd": 359, "pgd-150": 150} and r["n_worst"] == 150
  flags_full, flags_short = r["robust_flags"]["pgd"], r["robust_flags"]["pgd-150"]
  np.testing.assert_array_equal(flags_short, flags_full[:150])  # same deterministic attack on the same points
  assert r["robust_acc"]["pgd-150"] == pytest.approx(flags_full[:150].mean())
  assert r["worst_case_acc"] == pytest.approx(flags_full[:150].mean())
  assert r["adversarials"]["pgd-150"].shape[0] == 150
  with pytest.raises(ValueError, match="max_examples of attack 'bad' must be a positive int"):
    ev.evaluate(v, test, [dict(full, label="bad", max_examples=0)], progress=False)
  by_class = test.subset(np.argsort(test.labels, kind="stable"))  # a class-sorted file
  with pytest.raises(ValueError, match="first 150 rows, which hold only 5 of the split's 10 classes"):
    ev.evaluate(v, by_class, [short], progress=False)


# Masked versions of the honest digits model, each with the check that must flag it.
MASKED_MODELS = {
    "stop_gradient": (lambda apply: lambda v, x: apply(v, jax.lax.stop_gradient(x)), "zero_gradients"),
    "input_quantisation": (lambda apply: lambda v, x: apply(v, jnp.round(x * 255.0) / 255.0), "zero_gradients"),
    "logits_x1e4": (lambda apply: lambda v, x: 1e4 * apply(v, x), "square_beats_white_box"),
    "floor_of_logits": (lambda apply: lambda v, x: jnp.floor(apply(v, x)), "zero_gradients"),
    "softmax_outputs": (lambda apply: lambda v, x: jax.nn.softmax(apply(v, x)), "probabilities"),
}
_PGD = {"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 10, "step_size": 0.025}


def _flagged(apply, v, test):
  r = RobustEvaluator(apply).evaluate(v, test, [_PGD], batch_size=64, max_examples=64, checks=True, progress=False)
  return {c["name"] for c in r["checks"] if c["flagged"]}


@pytest.mark.slow  # one PGD and one Square compile per model: ~15 s each on a loaded 2-core machine
def test_masking_checks_pass_an_honest_model(linear_digits):
  apply, v, test = linear_digits
  assert _flagged(apply, v, test) == set()


@pytest.mark.slow
@pytest.mark.parametrize("masking", sorted(MASKED_MODELS))
def test_masking_checks_flag_every_masked_model(linear_digits, masking):
  apply, v, test = linear_digits
  wrap, check = MASKED_MODELS[masking]
  assert check in _flagged(wrap(apply), v, test)


def test_autoattack_comparison_flags_a_weaker_white_box_attack():
  from jaxrobust.evaluate import checks
  hit = checks.autoattack_beats_white_box({"pgd": 0.80, "aa": 0.0}, ["pgd"], ["aa"])
  assert hit["flagged"] and hit["value"] == pytest.approx(0.8) and "'pgd'" in hit["message"]
  assert not checks.autoattack_beats_white_box({"pgd": 0.46, "aa": 0.44}, ["pgd"], ["aa"])["flagged"]


@pytest.mark.slow
def test_run_checks_compares_pgd_with_autoattack_when_both_run():
  from jaxrobust.evaluate import checks
  specs = [dict(_PGD), {"name": "autoattack", "label": "aa", "eps": 0.1}]
  x, y = jnp.full((2, 8, 8, 1), 0.5), jnp.array([0, 1])
  scaled = lambda v, xx: 1e4 * (xx.reshape(2, -1) @ v)
  out = checks.run_checks(scaled, jnp.ones((64, 10)), x, y, {"pgd": 0.8, "aa": 0.0}, specs, square_queries=10)
  assert {c["name"]: c["flagged"] for c in out}["autoattack_beats_white_box"]
