"""Ensemble adversarial training (TA-MOO-AT and its baselines, Bui et al. 2023 section 4.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust import models
from jaxrobust.methods.registry import get_method
from jaxrobust.models.ensemble import Ensemble
from jaxrobust.train.state import create_train_state
from jaxrobust.train.step import make_train_step

X = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
Y = jax.random.randint(jax.random.key(1), (16,), 0, 10)
BATCH = {"image": X, "label": Y, "index": jnp.arange(16, dtype=jnp.int32)}
TX = optax.sgd(0.05)
SMALL = dict(eps=0.1, step_size=0.03, steps=3)


def _state(module, seed=0):
  return create_train_state(models.init_model(module, jax.random.key(seed), X.shape[1:]), TX, jax.random.key(2))


def _step(module, method):
  return jax.jit(make_train_step(module, method, TX, steps_per_epoch=10, num_classes=10))


def test_one_member_pgd_attacker_is_pgd_at():
  """M = 1, attacker 'pgd': CE(log p_en) = CE of the single model and the attack is PGD on it, so the step is
  PGD-AT's with mix 0.5 and twice the loss."""
  single = models.get_model("mlp", 10, hidden_sizes=(16,))
  ens = Ensemble(member=single, num_members=1)
  v = models.init_model(single, jax.random.key(0), X.shape[1:])
  s_single = create_train_state(v, optax.sgd(0.1), jax.random.key(2))
  s_ens = create_train_state(models.stack_members([v]), TX, jax.random.key(2))
  a, ma = jax.jit(make_train_step(single, get_method("pgd_at", mix=0.5, **SMALL), optax.sgd(0.1), steps_per_epoch=10,
                                  num_classes=10))(s_single, BATCH)
  b, mb = _step(ens, get_method("ensemble_at", attacker="pgd", attack_bn="eval", **SMALL))(s_ens, BATCH)
  np.testing.assert_allclose(2 * ma["loss"], mb["loss"], rtol=1e-5)
  jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, atol=1e-6), a.params,
               models.member_variables({"params": b.params}, 0)["params"])


@pytest.mark.parametrize("attacker", ["pgd", "uniform", "minmax", "mgda", "tamoo"])
def test_every_attacker_trains_an_ensemble_and_compiles_once(attacker):
  module = models.get_model("mlp", 10, members=3, hidden_sizes=(16,))
  step = _step(module, get_method("ensemble_at", attacker=attacker, **SMALL))
  state = _state(module)
  losses = []
  for _ in range(4):
    state, metrics = step(state, BATCH)
    losses.append(float(metrics["loss"]))
    assert 0 <= float(metrics["a_all"]) <= float(metrics["a_avg"]) <= 1
  assert step._cache_size() == 1
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_presets_and_errors():
  assert get_method("tamoo_at").hparams["attacker"] == "tamoo"
  assert get_method("moo_at").hparams["attacker"] == "mgda"
  assert get_method("minmax_at", steps=20).hparams["steps"] == 20
  with pytest.raises(ValueError, match="fixes attacker"):
    get_method("tamoo_at", attacker="pgd")
  with pytest.raises(ValueError, match="unknown ensemble attacker"):
    get_method("ensemble_at", attacker="fgsm")
  single = models.get_model("mlp", 10, hidden_sizes=(16,))
  with pytest.raises(ValueError, match="model.members"):
    _step(single, get_method("tamoo_at", **SMALL))(_state(single), BATCH)
