"""Tiny deterministic models for the APGD / FAB / Square / AutoAttack tests and the torchattacks cross-check.

* ``linear_model(key, k, shape)``: softmax regression z = W vec(x) + b with random weights.
* ``digits()``: sklearn's 8x8 digits as NHWC float32 in [0, 1] (pixel values / 16).
* ``train_digits(kind)``: a linear softmax or a 64-32-10 MLP trained with optax Adam on the first 1200 digits
  (a few seconds on CPU), returned as ``jax.tree_util.Partial(apply, params)`` so compiled attacks are reused.
* ``traced(logits_fn)``: the same model, counting in ``TRACED_CALLS`` the calls JAX makes while tracing it. A
  Python side effect runs only when a program is traced (a compiled program replays without calling Python),
  so an unchanged count across attack calls means nothing was traced, hence compiled, again.
(Their torch twins, for the torchattacks cross-check, are ``benchmarks.torch_models.digits_twin``.)
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def linear_apply(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def mlp_apply(params, x):
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


APPLY = {"linear": linear_apply, "mlp": mlp_apply}


def init_params(seed: int, kind: str, d: int, k: int, hidden: int = 32):
  # NumPy draws: eager jax.random calls would each compile a small kernel, which adds up in the tests.
  rng = np.random.default_rng(seed)
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  if kind == "linear":
    return {"w": f32(rng.normal(size=(d, k)) / np.sqrt(d)), "b": f32(0.1 * rng.normal(size=(k,)))}
  return {"w1": f32(rng.normal(size=(d, hidden)) / np.sqrt(d)), "b1": f32(np.zeros((hidden,))),
          "w2": f32(rng.normal(size=(hidden, k)) / np.sqrt(hidden)), "b2": f32(0.1 * rng.normal(size=(k,)))}


def model_fn(kind: str, params):
  return jax.tree_util.Partial(APPLY[kind], params)


def random_model(seed: int, kind: str = "linear", k: int = 10, shape=(4, 4, 1)):
  d = int(np.prod(shape))
  return model_fn(kind, init_params(seed, kind, d, k))


def random_images(seed: int, b: int, shape=(4, 4, 1)):
  return jnp.asarray(np.random.default_rng(1000 + seed).uniform(size=(b,) + tuple(shape)), jnp.float32)


@functools.lru_cache(maxsize=None)
def digits():
  from sklearn.datasets import load_digits
  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]  # (N, 8, 8, 1) in [0, 1]
  return x, d.target.astype(np.int32)


@functools.lru_cache(maxsize=None)
def train_digits(kind: str = "mlp", n_train: int = 1200, steps: int = 300, seed: int = 0):
  """Returns (params, logits_fn). Full-batch Adam, lr 1e-2; ~97% test accuracy for both kinds."""
  x, y = digits()
  xtr, ytr = jnp.asarray(x[:n_train]), jnp.asarray(y[:n_train])
  params = init_params(seed, kind, 64, 10)
  opt = optax.adam(1e-2)
  apply = APPLY[kind]

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(apply(p, xtr), ytr).mean()

  @jax.jit
  def train(p):
    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
    return p

  params = jax.device_get(train(params))
  return params, model_fn(kind, params)


def digits_test(n: int, n_train: int = 1200):
  x, y = digits()
  return jnp.asarray(x[n_train:n_train + n]), jnp.asarray(y[n_train:n_train + n])


TRACED_CALLS: collections.Counter = collections.Counter()


@functools.lru_cache(maxsize=None)
def _traced_apply(apply):
  def counted(params, x):
    if isinstance(x, jax.core.Tracer):
      TRACED_CALLS["model"] += 1
    return apply(params, x)
  return counted


@functools.lru_cache(maxsize=None)
def traced(logits_fn: jax.tree_util.Partial) -> jax.tree_util.Partial:
  """``Partial(apply, params)`` -> the same model counting its traced calls in ``TRACED_CALLS['model']``.

  One object per model, so every attack call sees the same function (and reuses its compiled programs).
  """
  return jax.tree_util.Partial(_traced_apply(logits_fn.func), *logits_fn.args)


def accuracy(logits_fn, x, y) -> float:
  return float(jnp.mean(jnp.argmax(logits_fn(x), axis=1) == y))
