"""Square with and without in-loop compaction (BENCHMARKS.md, "Square: the still-attacked points only").

    python -m benchmarks.square_compaction --json benchmarks/results/square_compaction.json

SmallCNN (random weights) on the first --points MNIST test images labelled with the model's own predictions
(every point starts correctly classified, as on a weak model most are fooled within a few hundred queries), Linf
Square with --queries queries at each eps. ``compact=False`` runs the query loop on the whole batch until the
last point is fooled (one program); ``compact=True`` (the default outside jit) re-gathers the still-attacked
points every ``square.CHUNK_QUERIES`` queries. Both give the same points (tested); this times them: first call
(compilation included) and the median of --repeats warm calls, alternating.
"""

import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.attacks import square as square_lib
from jaxrobust.data import load_dataset
from jaxrobust.models import get_model, init_model, make_apply


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--points", type=int, default=200)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.3])
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  ds = load_dataset("mnist", "test")
  x = jnp.asarray(ds.images[:args.points], jnp.float32) / 255
  module = get_model("small_cnn", 10)
  variables = init_model(module, jax.random.PRNGKey(0), (28, 28, 1))
  fn = jax.tree_util.Partial(make_apply(module), variables)
  y = jnp.argmax(fn(x), -1)
  index, active = jnp.arange(args.points), jnp.ones(args.points, bool)
  rows = []
  for eps in args.eps:
    eps_v = jnp.full((args.points,), eps)
    times = {False: [], True: []}
    results = {}
    for r in range(args.repeats + 1):
      for compact in (False, True):
        t0 = time.perf_counter()
        adv, fooled = square_lib.square_masked(fn, x, y, jax.random.PRNGKey(1), index, active, eps_v,
                                               n_queries=args.queries, compact=compact)
        fooled.block_until_ready()
        times[compact].append(time.perf_counter() - t0)
        results[compact] = (np.asarray(adv), np.asarray(fooled))
    same = bool(np.array_equal(results[False][1], results[True][1])
                and np.abs(results[False][0] - results[True][0]).max() <= 1e-6)
    for compact in (False, True):
      row = {"eps": eps, "compact": compact, "first_call_s": times[compact][0],
             "median_s": float(np.median(times[compact][1:])), "fooled": int(results[compact][1].sum()),
             "points": args.points, "queries": args.queries, "same_points": same,
             "load_average": os.getloadavg()[0]}
      rows.append(row)
      print(f"eps {eps}: compact={compact!s:5s} first call {row['first_call_s']:7.1f} s  warm median "
            f"{row['median_s']:7.1f} s  fooled {row['fooled']}/{args.points}  same points: {same}  "
            f"load {row['load_average']:.1f}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"command": "python -m benchmarks.square_compaction " + " ".join(argv or []),
                 "jax": jax.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
