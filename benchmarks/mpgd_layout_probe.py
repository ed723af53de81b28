"""Multi-targeted PGD: the three layouts of the class axis, timed (BENCHMARKS.md, "Multi-targeted PGD").

    python -m benchmarks.mpgd_layout_probe --json benchmarks/results/mpgd_layouts.json

``jaxrobust.attacks.multi_targeted.multi_targeted_pgd`` runs one targeted PGD toward each of the
C classes as one XLA program, with the runs folded into the batch axis ('batch'), vmapped ('vmap')
or looped over with ``lax.fori_loop`` ('loop'). This probe times the three on SmallCNN 28x28x1
(random weights), batch 128, 10 classes, 20 steps, eps 0.3, step 0.01, with the library's model
wrapper (``models.make_apply``, CPU micro-batches of 64 rows) and, with ``--microbatch 0``, the
whole-batch forward. Each layout is AOT-compiled (compile seconds reported), warmed up once, then
timed interleaved (``benchmarks.timing.measure``); it also checks that the layouts return the same
points.
"""

import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import report as report_lib
from benchmarks import timing
from jaxrobust.attacks.multi_targeted import LAYOUTS, multi_targeted_pgd
from jaxrobust.models import get_model, init_model, make_apply


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--layouts", default=",".join(LAYOUTS))
  p.add_argument("--microbatch", default="auto", help="'auto' (library default) or rows per chunk; 0 = whole batch")
  p.add_argument("--json", default=None, help="write the record here")
  a = p.parse_args(argv)
  microbatch = a.microbatch if a.microbatch == "auto" else int(a.microbatch)

  module = get_model("small_cnn", num_classes=a.classes)
  variables = init_model(module, jax.random.key(0), (28, 28, 1))
  apply = make_apply(module, microbatch=microbatch)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((a.batch, 28, 28, 1), dtype=np.float32))
  y = jnp.asarray(rng.integers(0, a.classes, a.batch).astype(np.int32))
  key = jax.random.key(1)

  variants, outputs, compile_info = [], {}, {}
  for layout in a.layouts.split(","):
    def run(v, x, y, key, layout=layout):
      return multi_targeted_pgd(jax.tree_util.Partial(apply, v), x, y, key, eps=0.3, step_size=0.01,
                                steps=a.steps, layout=layout)
    compiled, info = timing.aot_compile(run, variables, x, y, key)
    compile_info[layout] = {"compile_s": info["compile_total_s"],
                            "peak_estimate_mib": info["memory"].get("peak_estimate_bytes", 0) / 2**20}
    print(f"{layout}: compiled in {info['compile_total_s']:.2f} s, XLA peak estimate "
          f"{compile_info[layout]['peak_estimate_mib']:.0f} MiB", flush=True)
    outputs[layout] = np.asarray(compiled(variables, x, y, key))
    variants.append(timing.Variant(layout, "jax", lambda c=compiled: jax.block_until_ready(c(variables, x, y, key)),
                                   warmup=1))
  first = next(iter(outputs.values()))
  max_diff = {k: float(np.abs(v - first).max()) for k, v in outputs.items()}
  t0 = time.perf_counter()
  timing.measure(variants, repeats=a.repeats, warmup=1, log=print)
  rows = []
  for v in variants:
    rec = timing.variant_record(v, a.batch)
    rec.update(compile_info[v.name], max_abs_diff_to_first=max_diff[v.name])
    rows.append(rec)
  print(f"\nSmallCNN 28x28x1, batch {a.batch}, {a.classes} classes, {a.steps} steps, microbatch {microbatch}; "
        f"load average {report_lib.load_average()}, timed in {time.perf_counter() - t0:.0f} s")
  print("| layout | median s | min-max s | images/s | compile s | XLA peak MiB | max diff |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['name']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {r['items_per_s']:.1f} | "
          f"{r['compile_s']:.2f} | {r['peak_estimate_mib']:.0f} | {r['max_abs_diff_to_first']:.1e} |")
  if a.json:
    record = {"command": "python -m benchmarks.mpgd_layout_probe " + " ".join(argv or []),
              "config": vars(a), "machine": report_lib.machine_info(None), "rows": rows}
    with open(a.json, "w") as f:
      json.dump(record, f, indent=1)


if __name__ == "__main__":
  import sys
  main(sys.argv[1:])
