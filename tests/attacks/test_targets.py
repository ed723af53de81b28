"""Targeted modes (``attacks/targets.py``, ``get_attack(..., target=...)``): selectors, the wrapper, refusals,
jit, the evaluator's targeted success rate and the CLI spec."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust.attacks import registry, targets
from jaxrobust.attacks.fgsm import fgsm
from jaxrobust.attacks.model_calls import as_partial
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.pgd import pgd

K = 5
W = jax.random.normal(jax.random.PRNGKey(1), (12, K))
X = jax.random.uniform(jax.random.PRNGKey(2), (16, 2, 2, 3))
Y = jnp.arange(16, dtype=jnp.int32) % K
KEY = jax.random.PRNGKey(0)


def linear(x):
  return x.reshape(x.shape[0], -1) @ W


def _logits(b=64, k=K, seed=3):
  return jax.random.normal(jax.random.PRNGKey(seed), (b, k))


# ------------------------------------------------------------------------------------------
# Selectors
# ------------------------------------------------------------------------------------------

def test_selectors_never_pick_y_and_least_likely_is_argmin():
  z = _logits()
  y = jnp.argmax(z, 1).at[::3].set(jnp.argmin(z, 1)[::3])  # some points misclassified, some y = argmin
  for name in ("random", "most_likely_wrong"):
    t = targets.select_targets(name, z, y, KEY)
    assert t.dtype == jnp.int32 and t.shape == y.shape
    assert not np.any(np.asarray(t) == np.asarray(y)), name
  np.testing.assert_array_equal(targets.select_targets("least_likely", z, y), jnp.argmin(z, 1))
  # most_likely_wrong: the second best where y is the top class, the best where it is not.
  mlw = np.asarray(targets.select_targets("most_likely_wrong", z, y))
  order = np.argsort(-np.asarray(z), 1)
  expect = np.where(order[:, 0] == np.asarray(y), order[:, 1], order[:, 0])
  np.testing.assert_array_equal(mlw, expect)


def test_random_is_uniform_over_the_wrong_classes_and_per_example():
  n = 4000
  z = jnp.zeros((n, K))
  y = jnp.full((n,), 2, jnp.int32)
  t = np.asarray(targets.select_targets("random", z, y, KEY))
  counts = np.bincount(t, minlength=K) / n
  assert counts[2] == 0
  np.testing.assert_allclose(np.delete(counts, 2), 0.25, atol=0.03)
  # Per example: a batch's targets are its halves' targets (per-example keys, as every attack).
  z, y = _logits(16), Y
  full = targets.select_targets("random", z, y, KEY)
  keys = example_keys(KEY, 16)
  halves = [targets.select_targets("random", z[s], y[s], keys[s]) for s in (slice(0, 8), slice(8, 16))]
  np.testing.assert_array_equal(full, jnp.concatenate(halves))
  assert not np.array_equal(full, targets.select_targets("random", z, y, jax.random.PRNGKey(7)))


def test_single_logit_head_reads_as_two_classes():
  z = jnp.array([[2.0], [-1.0], [0.5]])
  y = jnp.array([1, 0, 0])
  np.testing.assert_array_equal(targets.select_targets("random", z, y, KEY), [0, 1, 1])
  np.testing.assert_array_equal(targets.select_targets("least_likely", z[:, 0], y), [0, 1, 0])


def test_user_function_is_used_and_checked():
  calls = []

  def next_class(logits, y):
    calls.append(logits.shape)
    return (y + 1) % logits.shape[1]

  a = registry.get_attack("pgd", eps=0.1, steps=3, target=next_class)
  np.testing.assert_array_equal(a.targets(linear, X, Y, KEY), (Y + 1) % K)
  xa = a(linear, X, Y, KEY)
  xb = pgd(linear, X, (Y + 1) % K, KEY, eps=0.1, step_size=2.5 * 0.1 / 3, steps=3, targeted=True)
  np.testing.assert_array_equal(xa, xb)
  assert calls and calls[0] == (16, K)
  with pytest.raises(ValueError, match=r"target function 'bad' must return \(16,\) integer classes"):
    def bad(logits, y):
      return logits
    registry.get_attack("pgd", eps=0.1, steps=1, target=bad)(linear, X, Y, KEY)


# ------------------------------------------------------------------------------------------
# The registry option
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["least_likely", "most_likely_wrong", "random"])
def test_get_attack_target_equals_the_targeted_attack_on_those_targets(target):
  a = registry.get_attack("pgd", eps=0.1, step_size=0.04, steps=4, target=target)
  t = targets.select_targets(target, linear(X), Y, KEY)
  if target == "least_likely":
    np.testing.assert_array_equal(t, jnp.argmin(linear(X), 1))
  x_adv, t_run = a.run(linear, X, Y, KEY)
  np.testing.assert_array_equal(t_run, t)
  direct = pgd(linear, X, t, KEY, eps=0.1, step_size=0.04, steps=4, targeted=True)
  np.testing.assert_array_equal(x_adv, direct)
  np.testing.assert_array_equal(a(linear, X, Y, KEY), direct)


def test_another_attack_family_and_target_none_is_untargeted():
  a = registry.get_attack("fgsm", eps=0.1, target="least_likely")
  np.testing.assert_array_equal(a(linear, X, Y, KEY),
                                fgsm(linear, X, jnp.argmin(linear(X), 1), KEY, eps=0.1, targeted=True))
  plain = registry.get_attack("fgsm", eps=0.1, target=None)
  assert not isinstance(plain, targets.TargetedAttack)
  np.testing.assert_array_equal(plain(linear, X, Y, KEY), fgsm(linear, X, Y, KEY, eps=0.1))
  # targeted=True alongside target is accepted (redundant), targeted=False refused.
  registry.get_attack("pgd", eps=0.1, targeted=True, target="random")
  with pytest.raises(ValueError, match="drop targeted=False"):
    registry.get_attack("pgd", eps=0.1, targeted=False, target="random")


def test_target_is_listed_for_attacks_with_targeted_only():
  params = list(registry.attack_parameters("pgd"))
  assert params[params.index("targeted") + 1] == "target"
  assert registry.attack_parameters("pgd")["target"].default is None
  for name in registry.attack_names():
    p = registry.attack_parameters(name)
    assert ("target" in p) == ("targeted" in p), name
  for name in ("apgd_t", "fab_t", "mpgd", "multi_targeted_pgd", "autoattack"):
    assert registry.attack_info(name).own_targets, name
    assert "target" not in registry.attack_parameters(name)


def test_refusals_say_why_and_name_the_nearest():
  with pytest.raises(ValueError, match="'apgd_t' does not take target='least_likely': APGD-T runs one attack per "
                                       "target"):
    registry.get_attack("apgd_t", eps=0.1, target="least_likely")
  with pytest.raises(ValueError, match="FAB-T runs one attack per target"):
    registry.get_attack("fab_t", eps=0.1, target="random")
  with pytest.raises(ValueError, match="mPGD runs a targeted PGD toward every class"):
    registry.get_attack("mpgd", eps=0.1, target="random")
  with pytest.raises(ValueError, match="AutoAttack is untargeted overall"):
    registry.get_attack("autoattack", eps=0.1, target="random")
  with pytest.raises(ValueError, match="'square' has no targeted mode .* attacks that do: .*pgd"):
    registry.get_attack("square", eps=0.1, target="random")
  with pytest.raises(ValueError, match=r"unknown target 'least_likley' \(did you mean 'least_likely'\?\)"):
    registry.get_attack("pgd", eps=0.1, target="least_likley")
  with pytest.raises(ValueError, match="did you mean 'most_likely_wrong'"):
    registry.get_attack("pgd", eps=0.1, target="most_likely")
  with pytest.raises(ValueError, match="unknown target 3"):
    registry.get_attack("pgd", eps=0.1, target=3)


def test_random_target_needs_a_key():
  a = registry.get_attack("pgd", eps=0.1, steps=1, init="none", target="random")
  with pytest.raises(ValueError, match="needs a PRNG key"):
    a(linear, X, Y, None)
  registry.get_attack("pgd", eps=0.1, steps=1, init="none", target="least_likely")(linear, X, Y, None)


def test_works_under_jit_and_compiles_once():
  a = registry.get_attack("pgd", eps=0.1, step_size=0.04, steps=3, target="random")

  @jax.jit
  def run(logits_fn, x, y, key):
    return a.run(logits_fn, x, y, key)

  lf = as_partial(linear)
  x_adv, t = run(lf, X, Y, KEY)
  np.testing.assert_array_equal(t, targets.select_targets("random", linear(X), Y, KEY))
  np.testing.assert_allclose(x_adv, a(linear, X, Y, KEY), atol=1e-6)
  run(lf, X[::-1], Y[::-1], jax.random.PRNGKey(5))  # new data and key: the same program
  assert run._cache_size() == 1


# ------------------------------------------------------------------------------------------
# Evaluator and CLI
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linear_digits():
  """A small softmax regression on the shipped digits (as tests/evaluate/test_robust.py, fewer steps)."""
  from jaxrobust.data import load_dataset
  train, test = load_dataset("digits", "train"), load_dataset("digits", "test").take(150)
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

  for _ in range(60):
    v, st = step(v, st)
  return apply, v, test


def test_evaluator_reports_targeted_success_and_keeps_robust_accuracy(linear_digits):
  from jaxrobust.evaluate.robust import RobustEvaluator
  apply, v, test = linear_digits
  base = {"name": "pgd", "eps": 0.15, "steps": 5, "step_size": 0.05, "init": "none"}

  def shifted(logits, y):
    return (y + 3) % logits.shape[1]

  specs = [dict(base, label="untargeted"), dict(base, label="ll", target="least_likely"),
           dict(base, label="rand", target="random"), dict(base, target=shifted)]
  ev = RobustEvaluator(apply)
  r = ev.evaluate(v, test, specs, batch_size=64, progress=False, keep_adversarials=True)  # 150: last batch padded
  fn_label = "pgd eps=0.15 init=none step_size=0.05 steps=5 target=shifted"
  assert set(r["targeted_success"]) == set(r["n_targeted"]) == {"ll", "rand", fn_label}
  json.dumps({k: r[k] for k in ("targeted_success", "n_targeted", "attacks")})  # a function target by name
  assert r["attacks"][3]["target"] == "shifted"

  x, y = jnp.asarray(test.as_float()), np.asarray(test.labels)
  clean = np.asarray(jnp.argmax(apply(v, x), 1)) == y
  for label, t in (("ll", np.asarray(jnp.argmin(apply(v, x), 1))), (fn_label, (y + 3) % 10)):
    pred = np.asarray(jnp.argmax(apply(v, jnp.asarray(r["adversarials"][label])), 1))
    assert r["robust_acc"][label] == pytest.approx(np.mean(clean & (pred == y)))  # robust: still y
    assert r["n_targeted"][label] == int(clean.sum())
    assert r["targeted_success"][label] == pytest.approx(np.mean(pred[clean] == t[clean]))
    assert r["targeted_success"][label] > 0
  points = ev.points(v, test, specs[1:3], batch_size=64, progress=False)
  np.testing.assert_array_equal(points.adv_targets["ll"], jnp.argmin(apply(v, x), 1))
  assert not np.any(points.adv_targets["rand"] == y)
  # Without a target the report has no new entries: the same report as before.
  plain = ev.evaluate(v, test, specs[:1], batch_size=64, progress=False)
  assert "targeted_success" not in plain and "n_targeted" not in plain
  assert plain["robust_acc"]["untargeted"] == r["robust_acc"]["untargeted"]
  assert ev.points(v, test, specs[:1], batch_size=64, progress=False).adv_targets is None


def test_cli_parses_a_target_and_lists_it(capsys):
  from jaxrobust.cli import _parse_attack_spec, main
  spec = _parse_attack_spec("pgd:eps=0.03,target=least_likely")
  assert spec == {"name": "pgd", "eps": 0.03, "target": "least_likely"}
  from jaxrobust.evaluate.specs import check_specs
  assert check_specs([spec]) == ["pgd eps=0.03 target=least_likely"]
  with pytest.raises(ValueError, match="does not take target"):
    check_specs([_parse_attack_spec("apgd_t:eps=0.03,target=random")])
  assert main(["list", "--attack", "pgd"]) == 0
  assert "    target=None\n" in capsys.readouterr().out
