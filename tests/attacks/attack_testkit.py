"""Tiny deterministic models shared by the attack tests (not a test module itself).

linear: z = flat(x) W + b;  mlp: z = relu(flat(x) W1 + b1) W2 + b2;  digits: a linear softmax model
trained on sklearn's 8x8 digits (x in [0, 1], shape (N, 8, 8, 1)).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np


def linear_apply(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def mlp_apply(params, x):
  h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def linear_params(seed=0, d=12, k=5, scale=1.0, dtype=np.float32):
  r = np.random.RandomState(seed)
  return {"w": jnp.asarray(scale * r.randn(d, k), dtype), "b": jnp.asarray(0.1 * r.randn(k), dtype)}


def mlp_params(seed=0, d=12, h=16, k=5, dtype=np.float32):
  r = np.random.RandomState(seed)
  return {"w1": jnp.asarray(r.randn(d, h) / np.sqrt(d) * 2, dtype), "b1": jnp.asarray(0.1 * r.randn(h), dtype),
          "w2": jnp.asarray(r.randn(h, k) / np.sqrt(h) * 2, dtype), "b2": jnp.asarray(0.1 * r.randn(k), dtype)}


def images(seed=0, b=8, shape=(2, 2, 3), dtype=np.float32, extremes=True):
  """(b, *shape) in [0, 1]; with extremes some pixels sit exactly at 0 and 1 (box edge cases)."""
  r = np.random.RandomState(seed)
  x = r.uniform(0, 1, (b,) + shape)
  if extremes:
    x.reshape(b, -1)[:, 0] = 0.0
    x.reshape(b, -1)[:, 1] = 1.0
  return jnp.asarray(x, dtype)


def labels(seed=0, b=8, k=5):
  return jnp.asarray(np.random.RandomState(seed + 100).randint(0, k, b), jnp.int32)


@functools.lru_cache(maxsize=None)
def digits_model(n_train=600, n_test=120, steps=150):
  """(params, x_test, y_test): linear softmax on sklearn digits, trained with Adam (full batch)."""
  import optax
  from sklearn.datasets import load_digits
  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]
  y = d.target.astype(np.int32)
  xtr, ytr = jnp.asarray(x[:n_train]), jnp.asarray(y[:n_train])
  params = {"w": jnp.zeros((64, 10), jnp.float32), "b": jnp.zeros((10,), jnp.float32)}
  opt = optax.adam(0.1)

  def loss(p):
    z = linear_apply(p, xtr)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, ytr)) + 1e-4 * jnp.sum(p["w"] ** 2)

  @jax.jit
  def train(p):
    def body(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(body, (p, opt.init(p)), None, length=steps)[0][0]

  params = train(params)
  return params, jnp.asarray(x[n_train:n_train + n_test]), jnp.asarray(y[n_train:n_train + n_test])


def accuracy(apply, params, x, y):
  return float(jnp.mean(jnp.argmax(apply(params, x), -1) == y))


def torch_linear(params):
  """torch.nn model computing the same linear map on NHWC tensors (flattened identically)."""
  import torch
  lin = torch.nn.Linear(params["w"].shape[0], params["w"].shape[1])
  with torch.no_grad():
    lin.weight.copy_(torch.tensor(np.asarray(params["w"]).T))
    lin.bias.copy_(torch.tensor(np.asarray(params["b"])))
  return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


def torch_mlp(params):
  import torch
  l1 = torch.nn.Linear(*params["w1"].shape)
  l2 = torch.nn.Linear(*params["w2"].shape)
  with torch.no_grad():
    l1.weight.copy_(torch.tensor(np.asarray(params["w1"]).T))
    l1.bias.copy_(torch.tensor(np.asarray(params["b1"])))
    l2.weight.copy_(torch.tensor(np.asarray(params["w2"]).T))
    l2.bias.copy_(torch.tensor(np.asarray(params["b2"])))
  return torch.nn.Sequential(torch.nn.Flatten(), l1, torch.nn.ReLU(), l2).eval()


def to_torch(a):
  import torch
  return torch.tensor(np.asarray(a))


@functools.lru_cache(maxsize=None)
def jit_attack(attack, apply, **static):
  """jit of ``attack(lambda x: apply(params, x), x, y, key, **static, **dynamic)``.

  Cached per (attack, apply, static config) so tests that only change data or traced values
  (eps, step sizes, params) share one compilation; call as f(params, x, y, key, eps=..., ...).
  """
  def run(params, x, y, key, **dynamic):
    return attack(lambda xx: apply(params, xx), x, y, key, **static, **dynamic)
  jitted = jax.jit(run)

  def call(params, x, y, key, **dynamic):
    # Strong float32 values: a Python float (weak type) and a float32 array would compile twice.
    dynamic = {k: v if v is None else jnp.asarray(v, jnp.float32) for k, v in dynamic.items()}
    return jitted(params, x, y, key, **dynamic)
  return call


def per_example_ce(apply, params, x, y):
  z = apply(params, x)
  return -jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1)[:, 0]


def linf(a, b):
  return np.asarray(jnp.max(jnp.abs((a - b).reshape(a.shape[0], -1)), axis=1))


def l2(a, b):
  return np.asarray(jnp.sqrt(jnp.sum(((a - b) ** 2).reshape(a.shape[0], -1), axis=1)))


def assert_valid(x_adv, x, eps, norm="linf", tol=1e-6):
  """In the ball (per example) and in the box."""
  eps = np.broadcast_to(np.asarray(eps, np.float64), (x.shape[0],))
  dist = linf(x_adv, x) if norm == "linf" else l2(x_adv, x)
  assert np.all(dist <= eps + tol), (dist, eps)
  assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
  chex.assert_equal_shape([x_adv, x])
  chex.assert_trees_all_equal_dtypes(x_adv, x)
