"""Attack speed of models written without the library's layers (BENCHMARKS.md, "Any JAX model").

    python -m benchmarks.foreign_models --json benchmarks/results/foreign_models.json

The C&W / TRADES MNIST net (conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, as the library's
``small_cnn``) written four ways: the library's ``small_cnn``; stock ``flax.linen`` (``nn.Conv``,
``nn.max_pool``); Flax NNX (``nnx.Conv``, ``nnx.max_pool``); raw ``lax.conv_general_dilated`` in NCHW / OIHW
layout with ``lax.reduce_window`` pooling, as a PyTorch port would be. Each foreign model runs as written and
through ``jaxrobust.models.fast_input_gradients``. Rows: PGD-10 and APGD-CE (``--apgd-iters``) on 100 random
28x28x1 images, jitted; compile time of the first call, then interleaved repeats (``benchmarks.timing``).
"""

import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)

import argparse
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import timing
from jaxrobust.attacks import get_attack
from jaxrobust.models import fast_input_gradients, get_model, init_model, make_apply

WIDTHS, HIDDEN, CLASSES = (32, 64), 200, 10


class StockCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    for w in WIDTHS:
      x = nn.relu(nn.Conv(w, (3, 3), padding="VALID")(x))
      x = nn.relu(nn.Conv(w, (3, 3), padding="VALID")(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(HIDDEN)(x))
    x = nn.relu(nn.Dense(HIDDEN)(x))
    return nn.Dense(CLASSES)(x)


class NNXCNN(nnx.Module):
  def __init__(self, rngs):
    chans = (1, WIDTHS[0], WIDTHS[0], WIDTHS[1], WIDTHS[1])
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), padding="VALID", rngs=rngs) for a, b in zip(chans, chans[1:])])
    dims = (WIDTHS[1] * 16, HIDDEN, HIDDEN, CLASSES)
    self.dense = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims, dims[1:])])

  def __call__(self, x):
    for i, conv in enumerate(self.convs):
      x = nnx.relu(conv(x))
      if i % 2:
        x = nnx.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    for layer in self.dense[:-1]:
      x = nnx.relu(layer(x))
    return self.dense[-1](x)


def raw_lax_cnn(params, x):
  """NCHW activations and OIHW kernels, as a model ported from PyTorch by hand."""
  x = jnp.transpose(x, (0, 3, 1, 2))
  for i, (w, b) in enumerate(params["convs"]):
    x = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    x = jax.nn.relu(x + b[None, :, None, None])
    if i % 2:
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
  x = x.reshape(x.shape[0], -1)
  for w, b in params["dense"][:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = params["dense"][-1]
  return x @ w + b


def raw_params(key):
  chans = (1, WIDTHS[0], WIDTHS[0], WIDTHS[1], WIDTHS[1])
  dims = (WIDTHS[1] * 16, HIDDEN, HIDDEN, CLASSES)
  keys = iter(jax.random.split(key, 16))
  convs = [(jax.random.normal(next(keys), (b, a, 3, 3)) * (2 / (9 * a)) ** 0.5, jnp.zeros(b))
           for a, b in zip(chans, chans[1:])]
  dense = [(jax.random.normal(next(keys), (a, b)) * (2 / a) ** 0.5, jnp.zeros(b)) for a, b in zip(dims, dims[1:])]
  return {"convs": convs, "dense": dense}


def models(key):
  lib = get_model("small_cnn", CLASSES)
  lib_vars = init_model(lib, key, (28, 28, 1))
  lib_apply = make_apply(lib)
  stock = StockCNN()
  stock_vars = jax.jit(stock.init)(key, jnp.zeros((1, 28, 28, 1)))
  graph, state = nnx.split(NNXCNN(nnx.Rngs(0)))
  raw = raw_params(key)
  plain = {"library small_cnn": lambda x: lib_apply(lib_vars, x),
           "stock flax.linen": lambda x: stock.apply(stock_vars, x),
           "flax nnx": lambda x: nnx.merge(graph, state)(x),
           "raw lax NCHW": lambda x: raw_lax_cnn(raw, x)}
  out = {}
  for name, f in plain.items():
    out[name] = f
    if not name.startswith("library"):
      out[name + " + fast_input_gradients"] = fast_input_gradients(f)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=100)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--apgd-iters", type=int, default=20)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  key = jax.random.PRNGKey(0)
  x = jax.random.uniform(key, (args.batch, 28, 28, 1))
  y = jnp.arange(args.batch) % CLASSES
  attacks = {"PGD-10": get_attack("pgd", eps=0.3, step_size=0.01, steps=10),
             f"APGD-CE-{args.apgd_iters}": get_attack("apgd_ce", eps=0.3, n_iter=args.apgd_iters)}
  rows = []
  for attack_name, attack in attacks.items():
    variants = []
    for model_name, f in models(key).items():
      run = jax.jit(lambda xx, yy, k, f=f: attack(f, xx, yy, k))
      variants.append(timing.Variant(model_name, "jax", lambda run=run: run(x, y, key).block_until_ready()))
    print(f"{attack_name}: load average {os.getloadavg()}", flush=True)
    timing.measure(variants, args.repeats, 1, lambda s: print(s, flush=True))
    base = None
    for v in variants:
      rec = timing.variant_record(v, args.batch)
      rec.update(attack=attack_name, model=v.name, first_call_s=v.first_call_s)
      base = base or rec.get("median_s")
      rec["x_library"] = rec.get("median_s", float("nan")) / base
      rows.append(rec)
      print(f"  {attack_name:14s} {v.name:42s} first call {v.first_call_s:6.2f} s  median "
            f"{rec.get('median_s', float('nan')) * 1000:8.0f} ms  x library {rec['x_library']:.2f}", flush=True)
  meta = {"command": "python -m benchmarks.foreign_models " + " ".join(argv or []), "jax": jax.__version__,
          "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(), "load_average_end": os.getloadavg()}
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"meta": meta, "rows": rows}, fh, indent=2)
  return rows


if __name__ == "__main__":
  main()
