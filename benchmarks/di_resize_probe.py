"""DI's per-example random resize-and-pad under jit: interpolation matrices vs lax.switch over candidate sizes.

(a) ``transfer_family.resize_and_pad``: per example an (out, in) bilinear matrix per axis from its traced
    (size, offset), applied by two batched contractions;
(b) ``lax.switch`` over the candidate sizes [low, high) of ``jax.image.resize`` (linear, no antialias) followed
    by a dynamic_update_slice into zeros; under vmap (per-example sizes) every branch runs and one is selected.

Times forward + backward (what an attack step needs) of the transform alone, and the largest difference.

    python -m benchmarks.di_resize_probe
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from jaxrobust.attacks import transfer_family as tf
from jaxrobust.attacks.per_example import example_keys


def switch_resize_and_pad(x, size, offset, out_hw, low, high):
  def one(xi, s, o):
    def branch(n):
      def f(xi, o):
        r = jax.image.resize(xi, (n, n, xi.shape[-1]), "linear", antialias=False)
        return jax.lax.dynamic_update_slice(jnp.zeros(out_hw + (xi.shape[-1],), xi.dtype), r, (o[0], o[1], 0))
      return f
    branches = [branch(n) for n in range(low, high + 1)]  # high: the "no diversity" size when out = high
    return jax.lax.switch(s[0] - low, branches, xi, o)
  return jax.vmap(one)(x, size, offset)


def timed(fn, *args, reps=5):
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(reps):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - t0) / reps


def main():
  rows = []
  for b, n in ((128, 32), (16, 224)):
    x = jax.random.uniform(jax.random.key(0), (b, n, n, 3))
    size, offset, out_hw = tf.diversity_draws(example_keys(jax.random.key(1), b), (n, n), 1.0, 0.9)
    low, high = tf._resize_range(n, 0.9)
    ct = jax.random.normal(jax.random.key(2), (b,) + out_hw + (3,))

    def loss_a(x):
      return jnp.sum(tf.resize_and_pad(x, size, offset, out_hw) * ct)

    def loss_b(x):
      return jnp.sum(switch_resize_and_pad(x, size, offset, out_hw, low, high) * ct)

    fa, fb = jax.jit(jax.value_and_grad(loss_a)), jax.jit(jax.value_and_grad(loss_b))
    diff = float(jnp.max(jnp.abs(tf.resize_and_pad(x, size, offset, out_hw)
                                 - switch_resize_and_pad(x, size, offset, out_hw, low, high))))
    rows.append((b, n, high - low, timed(fa, x) * 1e3, timed(fb, x) * 1e3, diff))
  print("| batch | image | candidate sizes | matrices (ms, fwd+bwd) | lax.switch (ms, fwd+bwd) | max diff |")
  print("|---|---|---|---|---|---|")
  for b, n, c, ta, tb, d in rows:
    print(f"| {b} | {n}x{n}x3 | {c} | {ta:.1f} | {tb:.1f} | {d:.1e} |")


if __name__ == "__main__":
  main()
