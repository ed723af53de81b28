"""Per-iteration probe behind BENCHMARKS.md section 1b (where AutoAttack's time goes on CPU).

    python -m benchmarks.aa_component_probe [rows]

On the robust SmallCNN of ``autoattack_vs_torchattacks.py`` (runs/aa_compare_pgd_at; train it
with that script first), at ``rows`` (default 48, the bucket size of the 100-point comparison):
1. one input forward-backward, JAX against the same net in torch (interleaved medians);
2. ms per iteration of a plain 100-step PGD loop, of one APGD run (``apgd._apgd_run_jit``) and of
   one FAB-T run; ms per Square query;
3. FAB's box-constrained hyperplane projection at D = 784 with the sort and with the bisection.
"""
import sys
import time

import jaxrobust  # noqa: F401  (XLA:CPU flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import torch_models as tm
from jaxrobust import losses as L
from jaxrobust.attacks import apgd as A
from jaxrobust.attacks import fab as F
from jaxrobust.attacks import square as S
from jaxrobust.data import load_splits
from jaxrobust.runs import load_run

torch.set_num_threads(2)


def best_ms(f, n=3):
  jax.block_until_ready(f())
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(f())
    ts.append(time.perf_counter() - t)
  return 1e3 * min(ts)


def main(rows: int) -> None:
  run = load_run("runs/aa_compare_pgd_at")
  variables = run.variables
  ds = load_splits(run.config["data"]).test
  x = jnp.asarray(np.asarray(ds.as_float()[:rows], np.float32))
  y = jnp.asarray(np.asarray(ds.labels[:rows], np.int32))
  fn = jax.tree_util.Partial(run.apply, variables)
  key = jax.random.PRNGKey(0)
  eps, idx = jnp.full((rows,), 0.1), jnp.arange(rows)

  # 1. forward-backward, interleaved with torch
  g = jax.jit(lambda f, xx: jax.grad(lambda z: jnp.sum(L.cross_entropy(f(z), y)))(xx))
  net = tm.port_flax_to_torch(variables, tm.build_torch_model("small_cnn", x.shape[1:], 10, mean=run.module.mean,
                                                              std=run.module.std)).eval()
  xt, yt = tm.to_torch_images(np.asarray(x)), torch.from_numpy(np.asarray(y, np.int64))

  def t_fb():
    xx = xt.clone().requires_grad_(True)
    return torch.autograd.grad(torch.nn.functional.cross_entropy(net(xx), yt, reduction="sum"), xx)

  # Blocks, not interleaving: torch's OpenMP threads spin after each op and slow a small JAX call
  # that follows them by a few ms (seen while writing this probe).
  fs = {"jax": lambda: jax.block_until_ready(g(fn, x)), "torch": t_fb}
  ts = {}
  for k, f in fs.items():
    for _ in range(3):
      f()
    runs = []
    for _ in range(15):
      t = time.perf_counter()
      f()
      runs.append(time.perf_counter() - t)
    ts[k] = runs
  print(f"rows {rows}: forward-backward ms (median of 15, one block each):",
        {k: round(1e3 * float(np.median(v)), 1) for k, v in ts.items()}, flush=True)

  # 2. per-iteration costs
  @jax.jit
  def plain(f, xx, yy):
    gr = jax.grad(lambda z: jnp.sum(L.cross_entropy(f(z), yy)))
    body = lambda i, xa: jnp.clip(jnp.clip(xa + 0.01 * jnp.sign(gr(xa)), xx - 0.1, xx + 0.1), 0, 1)  # noqa: E731
    return jax.lax.fori_loop(0, 100, body, xx)

  tgt = jnp.asarray((np.asarray(y) + 1) % 10)
  per_it = {
      "plain PGD": best_ms(lambda: plain(fn, x, y)) / 100,
      "APGD-CE run": best_ms(lambda: A._apgd_run_jit(fn, x, y, key, idx, eps, None, norm="linf", loss="ce",
                                                       n_iter=100, rho=0.75, eot_iter=1, randomized=False,
                                                       record_iterates=False)) / 100,
      "FAB-T run": best_ms(lambda: F._fab_run_jit(fn, x, y, key, idx, eps, tgt, norm="linf", n_iter=100,
                                                  alpha_max=0.1, eta=1.05, beta=0.9, use_rand_start=False)) / 100,
      "Square query": best_ms(lambda: S.square_masked(fn, x, y, key, idx, jnp.ones((rows,), bool), eps,
                                                      n_queries=500), n=2) / 500,
  }
  print(f"rows {rows}: ms per iteration:", {k: round(v, 1) for k, v in per_it.items()}, flush=True)

  # 3. FAB projection, 2 x rows hyperplanes (x1 and x0 are projected together) in D = 784
  w = jax.random.normal(key, (2 * rows, 784))
  t = jax.random.uniform(jax.random.PRNGKey(1), (2 * rows, 784))
  b = jnp.sum(w * t, 1) * 0.5
  proj = {}
  for m in ("sort", "bisect"):
    pj = jax.jit(lambda t_, w_, b_, m=m: F.project_onto_hyperplane(t_, w_, b_, "linf", m))
    proj[m] = best_ms(lambda pj=pj: pj(t, w, b), n=7)
  print(f"rows {rows}: FAB projection ms:", {k: round(v, 1) for k, v in proj.items()}, flush=True)


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
