"""Single-layer XLA:CPU probe behind BENCHMARKS.md section 1 (convolution and max-pool timings).

    python -m benchmarks.conv_layer_probe                          # jaxrobust default flags
    JAXROBUST_XLA_FLAGS=0 python -m benchmarks.conv_layer_probe    # XLA default (YNNPACK)

Prints, per SmallCNN convolution shape at batch 128, forward ms and forward+input-gradient ms,
and the reduce_window vs reshape max-pool. Medians of 7 calls after one warm-up.
"""
import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

B = 128
DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# (input shape, kernel shape) of SmallCNN's four convolutions on 28x28x1 inputs
SHAPES = [((B, 28, 28, 1), (3, 3, 1, 32)), ((B, 26, 26, 32), (3, 3, 32, 32)), ((B, 12, 12, 32), (3, 3, 32, 64)),
          ((B, 10, 10, 64), (3, 3, 64, 64))]


def timeit(f, *a, n=7):
  """Median ms of n calls of the AOT-compiled f after one warm-up call."""
  c = jax.jit(f).lower(*a).compile()
  jax.block_until_ready(c(*a))
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(c(*a))
    ts.append(time.perf_counter() - t)
  return round(float(np.median(ts)) * 1000, 2)


def conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=DIMENSIONS)


def main():
  k = jax.random.key(0)
  for xs, ws in SHAPES:
    x = jax.random.normal(k, xs)
    w = jax.random.normal(k, ws) * 0.1
    forward = timeit(lambda x: conv(x, w), x)
    backward = timeit(lambda x: jax.grad(lambda x: jnp.sum(conv(x, w) ** 2))(x), x)
    print(xs, ws, "fwd ms", forward, "fwd+bwd_in ms", backward, flush=True)
  x = jax.random.normal(k, (B, 24, 24, 32))
  pools = [("reduce_window", lambda x: nn.max_pool(x, (2, 2), (2, 2))),
           ("reshape", lambda x: x.reshape(B, 12, 2, 12, 2, 32).max(axis=(2, 4)))]
  for name, pool in pools:
    print(name, "fwd", timeit(pool, x), "fwd+bwd", timeit(lambda x: jax.grad(lambda x: jnp.sum(pool(x) ** 2))(x), x),
          flush=True)


if __name__ == "__main__":
  main()
