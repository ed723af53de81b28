"""The shared attack toolkit: per-example broadcasting, keys and active set; registry factories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks import per_example as pe
from jaxrobust.attacks.fgsm import fgsm
from jaxrobust.attacks.registry import configured, get_attack

X = jnp.zeros((4, 3, 2, 1))


def test_broadcasting():
  v = jnp.arange(4.0)
  assert pe.expand(v, X).shape == (4, 1, 1, 1)
  assert pe.expand(v > 1, X).dtype == bool
  assert pe.as_bcast(0.5, X).shape == () and pe.as_bcast(v, X).shape == (4, 1, 1, 1)
  np.testing.assert_array_equal(pe.per_example(0.5, X), np.full(4, 0.5, np.float32))
  out = pe.select(v > 1, jnp.ones_like(X), X)
  np.testing.assert_array_equal(np.asarray(out).reshape(4, -1).max(1), [0, 0, 1, 1])
  index, active = pe.whole_batch(X)
  np.testing.assert_array_equal(index, np.arange(4))
  assert np.all(np.asarray(active))


def test_keys_by_position_and_by_global_id():
  key = jax.random.key(3)
  keys = pe.example_keys(key, 5)
  np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(pe.indexed_keys(key, jnp.arange(5))))
  # A point keeps its keys in any bucket: keys come from its global id, not its row.
  ids = jnp.asarray([4, 1])
  np.testing.assert_array_equal(jax.random.key_data(pe.indexed_keys(key, ids)),
                                jax.random.key_data(keys)[np.asarray(ids)])
  np.testing.assert_array_equal(jax.random.key_data(pe.fold_keys(keys, 7))[2],
                                jax.random.key_data(jax.random.fold_in(keys[2], 7)))
  assert pe.example_keys(keys, 5) is keys  # a batch of keys is used as is
  with pytest.raises(ValueError, match="per-example keys"):
    pe.example_keys(keys, 4)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    pe.example_keys(None, 4)


def test_active_set_runs_stop_when_all_are_fooled():
  x = jnp.zeros((4, 2))
  calls = []

  def run(r):  # run r fools point r (and nothing else)
    calls.append(r)
    return x + (r + 1.0), jnp.arange(4) == r

  still, adv = jax.jit(lambda s: pe.run_until_all_fooled(run, s, x, jnp.int32(0), jnp.int32(10)))(
      jnp.asarray([True, True, False, True]))
  np.testing.assert_array_equal(still, [False, False, False, False])
  np.testing.assert_array_equal(np.asarray(adv)[:, 0], [1.0, 2.0, 0.0, 4.0])  # point 2 was never active
  still, adv = pe.absorb(jnp.asarray([True, False]), jnp.zeros((2, 1)), jnp.ones((2, 1)), jnp.asarray([True, True]))
  np.testing.assert_array_equal(still, [False, False])
  np.testing.assert_array_equal(np.asarray(adv)[:, 0], [1.0, 0.0])


def test_active_buckets_pad_and_mark_the_real_rows():
  buckets = pe.active_buckets(np.asarray([False, True, True, False, True]), 2)
  assert [list(i) for i, _ in buckets] == [[1, 2], [4, 0]]
  assert [list(v) for _, v in buckets] == [[True, True], [True, False]]
  assert pe.active_buckets(np.zeros(3, bool), 2) == []


def test_configured_checks_options_when_configured():
  f = lambda v: v.reshape(v.shape[0], -1)[:, :3]  # noqa: E731
  x = jnp.full((2, 3, 1, 1), 0.5)
  y = jnp.asarray([0, 1])
  np.testing.assert_array_equal(configured(fgsm, eps=0.1)()(f, x, y, None), fgsm(f, x, y, eps=0.1))
  with pytest.raises(TypeError):
    configured(fgsm)(eps=0.1, stepsize=0.1)  # the bare factory: misspelt option
  with pytest.raises(ValueError, match="'fgsm' has no parameter 'stepsize'"):
    get_attack("fgsm", eps=0.1, stepsize=0.1)  # through the registry: a clear ValueError
  with pytest.raises(ValueError, match="'apgd_ce' needs eps"):
    get_attack("apgd_ce", n_iter=3)


def test_get_attack_refuses_unknown_and_missing_options_naming_the_valid_ones():
  import inspect
  from jaxrobust.attacks.registry import attack_names, attack_parameters, get_attack
  with pytest.raises(ValueError, match=r"no parameter 'step' \(did you mean 'steps'\?\)"):
    get_attack("pgd", eps=0.1, step=5)
  with pytest.raises(ValueError, match="'pgd' needs eps"):
    get_attack("pgd", steps=5)
  with pytest.raises(ValueError, match="did you mean 'version'"):
    get_attack("autoattack", eps=0.1, verison="standard")
  with pytest.raises(ValueError, match="eps must be a number; got 'abc'"):
    get_attack("pgd", eps="abc")
  with pytest.raises(ValueError, match="'bim' has no parameter 'init'"):  # BIM sets its own start
    get_attack("bim", eps=0.1, init="uniform")
  for name in attack_names():  # every declared option is accepted: its default passed explicitly
    params = attack_parameters(name)
    assert "eps" in params, name
    config = {k: q.default for k, q in params.items() if q.default is not inspect.Parameter.empty}
    get_attack(name, **{**config, "eps": 0.1})
