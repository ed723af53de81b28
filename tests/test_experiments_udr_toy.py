"""UDR's synthetic experiment (experiments/udr/toy.py): the data follow the paper's mixture, and the toy attack is
PGD's hard projection at lambda = 1 (tau = step) and leaves the ball at lambda < 1."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.udr import toy


def test_toy_data_mixture_and_attack_reductions():
  x, y = toy.sample(np.random.default_rng(0), 20_000)
  assert x.shape == (20_000, 2) and set(np.unique(y)) == {0, 1}
  np.testing.assert_allclose(np.mean(y == 0), 0.1, atol=0.01)  # A is 10% of the points
  a = x[y == 0]
  np.testing.assert_allclose(a.mean(0), [-2.0, 0.0], atol=0.05)
  np.testing.assert_allclose(a.var(0), [0.5, 0.5], atol=0.05)
  params = toy.init_mlp(jax.random.key(0))
  xs, ys = jnp.asarray(x[:64]), jnp.asarray(y[:64])
  hard = toy.attack(params, xs, ys, jax.random.key(1), eps=1.0, step=0.1, steps=5)
  soft = toy.attack(params, xs, ys, jax.random.key(1), eps=1.0, step=0.1, steps=5, lam=1.0)
  np.testing.assert_allclose(np.asarray(soft), np.asarray(hard), atol=1e-6)
  loose = toy.attack(params, xs, ys, jax.random.key(1), eps=1.0, step=0.1, steps=5, lam=0.0)
  assert float(jnp.max(jnp.abs(hard - xs))) <= 1.0 + 1e-6
  assert float(jnp.max(jnp.abs(loose - xs))) > 1.0  # no pull: the soft ball lets points leave
