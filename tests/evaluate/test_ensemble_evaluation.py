"""The evaluator on an ensemble: member probabilities, per-member accuracy, A-All, attacks on one member, and
CCE's transferability table from one evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust import models
from jaxrobust.attacks.per_example import IndexedKey
from jaxrobust.attacks.pgd import pgd
from jaxrobust.data import load_dataset
from jaxrobust.evaluate.robust import RobustEvaluator


@pytest.fixture(scope="module")
def digits_ensemble():
  """Two MLP members trained briefly on the shipped digits (different inits)."""
  train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
  module = models.get_model("mlp", 10, members=2, hidden_sizes=(32,))
  variables = models.init_model(module, jax.random.key(0), train.images.shape[1:])
  x, y = jnp.asarray(train.as_float()), jnp.asarray(train.labels)
  opt = optax.adam(0.01)
  st = opt.init(variables)

  @jax.jit
  def step(v, st):
    def loss(v):  # each member trained on its own CE (sum over members)
      z = module.apply(v, x, return_features=True).member_logits
      return optax.softmax_cross_entropy_with_integer_labels(z, y[None]).mean(1).sum()
    u, st = opt.update(jax.grad(loss)(v), st)
    return optax.apply_updates(v, u), st

  for _ in range(150):
    variables, st = step(variables, st)
  return module, variables, test.take(120)


def test_members_are_reported_and_consistent(digits_ensemble):
  module, v, test = digits_ensemble
  ev = RobustEvaluator.for_module(module)
  spec = {"name": "pgd", "label": "pgd", "eps": 0.15, "steps": 5, "step_size": 0.05}
  r = ev.evaluate(v, test, [spec], batch_size=50, progress=False)  # last batch padded
  e = r["ensemble"]
  x, y = jnp.asarray(test.as_float()), np.asarray(test.labels)
  z = np.asarray(models.make_member_apply(module)(v, x))
  np.testing.assert_allclose(e["member_clean_acc"], 100 * (z.argmax(-1) == y).mean(1))
  assert min(e["member_clean_acc"]) > 70
  s = e["attack_success"]["pgd"]
  assert s["A_all"] <= min(s["A_i"]) <= s["A_avg"] <= max(s["A_i"])
  np.testing.assert_allclose(s["A_i"], 100 - np.asarray(e["member_robust_acc"]["pgd"]))
  assert 0.0 <= e["entropy_auc"]["pgd"] <= 1.0
  assert "transferability" not in e


def test_attack_on_one_member_and_the_transferability_table(digits_ensemble):
  module, v, test = digits_ensemble
  ev = RobustEvaluator.for_module(module)
  base = {"name": "pgd", "eps": 0.15, "steps": 5, "step_size": 0.05, "init": "none"}
  specs = [dict(base, label="on member 0", member=0), dict(base, label="on member 1", member=1),
           dict(base, label="on ensemble")]
  r = ev.evaluate(v, test, specs, batch_size=120, progress=False, keep_adversarials=True)
  x, y = jnp.asarray(test.as_float()), jnp.asarray(test.labels)
  member_apply = models.make_member_apply(module)
  x0 = pgd(lambda xx: member_apply(v, xx)[0], x, y, None, eps=0.15, step_size=0.05, steps=5, init="none")
  np.testing.assert_allclose(r["adversarials"]["on member 0"], x0, atol=1e-6)
  t = r["ensemble"]["transferability"]
  z0 = np.asarray(member_apply(v, x0)).argmax(-1)
  np.testing.assert_allclose(t["a11"], 100 * np.mean(z0[0] == np.asarray(y)), atol=1e-9)
  np.testing.assert_allclose(t["a12"], 100 * np.mean(z0[1] == np.asarray(y)), atol=1e-9)
  assert t["a11"] < t["a12"]  # white-box on member 0 hurts member 0 most
  assert abs(t["S11"] + t["S10"] + t["S01"] + t["S00"] - 100) < 1e-9
  assert t["attacks"] == {"members": ["on member 0", "on member 1"], "ensemble": "on ensemble"}


def test_member_index_out_of_range_is_refused(digits_ensemble):
  module, v, test = digits_ensemble
  with pytest.raises(ValueError, match="member 2 does not exist; the ensemble has 2 members"):
    RobustEvaluator.for_module(module).evaluate(v, test.take(8), [{"name": "fgsm", "eps": 0.1, "member": 2}],
                                                progress=False)


def test_member_attack_needs_an_ensemble():
  apply = lambda v, x: x.reshape(x.shape[0], -1) @ v  # noqa: E731
  test = load_dataset("digits", "test").take(8)
  with pytest.raises(ValueError, match="member apply"):
    RobustEvaluator(apply).evaluate(jnp.zeros((64, 10)), test,
                                    [{"name": "fgsm", "eps": 0.1, "member": 0}], progress=False)


def test_multi_objective_attack_on_the_members(digits_ensemble):
  """moo_ens (TA-MOO on the ENS task set) reads the members' logits through the evaluator's member apply; its
  A-All / A-Avg are in the report, and it equals the attack called directly."""
  module, v, test = digits_ensemble
  spec = {"name": "moo_ens", "label": "tamoo", "eps": 0.15, "steps": 5, "step_size": 0.05}
  r = RobustEvaluator.for_module(module).evaluate(v, test, [spec], batch_size=120, progress=False,
                                                  keep_adversarials=True)
  from jaxrobust.attacks import get_attack
  member_apply = models.make_member_apply(module)
  x, y = jnp.asarray(test.as_float()), jnp.asarray(test.labels)
  x_adv = get_attack("moo_ens", eps=0.15, steps=5, step_size=0.05)(
      lambda xx: member_apply(v, xx), x, y,
      IndexedKey(jax.random.fold_in(jax.random.PRNGKey(0), 0), jnp.arange(len(test))))  # the evaluator's keys
  np.testing.assert_allclose(r["adversarials"]["tamoo"], x_adv, atol=1e-6)
  s = r["ensemble"]["attack_success"]["tamoo"]
  assert s["A_all"] <= s["A_avg"] and s["A_avg"] > 0
