"""1 vs 8 simulated devices for a BN ensemble: train-mode outputs, BN statistics and CE gradients per layout.

usage: python _ensemble_devices.py; prints 'LAYOUT out stats grad' relative max differences.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"

import chex  # noqa: E402

chex.set_n_cpu_devices(8)  # fake devices: before any JAX computation creates the CPU backend

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from jaxrobust import models  # noqa: E402


def rel(a, b):
  return max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(u)) + 1e-12))
             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


mesh = Mesh(np.array(jax.devices()), ("data",))
x = jax.random.uniform(jax.random.key(1), (64, 8, 8, 3))
y = jax.random.randint(jax.random.key(2), (64,), 0, 10)
repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
for layout in ("vmap", "unrolled", "scan"):
  module = models.get_model("resnet20", 10, width=4, members=2, ensemble_layout=layout)
  v = models.init_model(module, jax.random.key(0), x.shape[1:])

  def step(v, x, y):
    def loss(p):
      z, upd = module.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(z, y).mean(), (z, upd)
    (_, (z, upd)), g = jax.value_and_grad(loss, has_aux=True)(v["params"])
    return z, upd, g

  one = jax.jit(step)(v, x, y)
  eight = jax.jit(step, in_shardings=(repl, data, data))(jax.device_put(v, repl), jax.device_put(x, data),
                                                         jax.device_put(y, data))
  print(layout, rel(one[0], eight[0]), rel(one[1], eight[1]), rel(one[2], eight[2]))
