"""AutoAttack standard, ours against the original AutoAttack package (Croce & Hein 2020), side by side in one run.

    python -m benchmarks.autoattack_vs_original --reference-src DIR --run-dir RUN [--n 200] [--eps 0.3]
        [--variants default batched] [--tag NAME]

DIR holds the package ``autoattack/`` of github.com/fra31/auto-attack (it is not on the package index): a checkout
of the repository, or ``pip install --no-deps --target DIR`` of it, in a scratch folder outside this repository.
RUN is a ``jaxrobust train`` output folder whose model has a PyTorch twin (``benchmarks.torch_models``); its weights
are copied into the twin and the largest logit difference is recorded. The recorded runs used

    # SmallCNN, PGD-AT on Fashion-MNIST (the model of autoattack_vs_torchattacks.py); then --n 200 --eps 0.1
    jaxrobust train --config fashion_mnist_reduced --output-dir runs/aa_small_cnn model.channels=[32,64] \
        model.hidden=200 method.name=pgd_at method.eps=0.1 method.step_size=0.025 method.steps=10 "eval.attacks=[]"
    # PreAct ResNet-18, 40 Adam steps of standard training on CIFAR-10 (a weak model, for cost only); then
    # --n 400 --eps 0.031372549 --n-iter 10 --n-queries 500
    jaxrobust train --config cifar10_pgd_at --output-dir runs/aa_preact_resnet18 "method={'name':'standard'}" \
        model.name=preact_resnet18 data.train_subset=5120 data.subset_seed=0 data.test_subset=500 train.epochs=1 \
        optim.name=adam optim.lr=0.001 optim.weight_decay=0 "eval.attacks=[]"

On the first ``--n`` test points of the run's dataset, with the same weights, points and eps, the script times

* ``jaxrobust``: ``run_autoattack(version='standard')`` for each ``--variants`` entry, cold (the first call,
  compilation included) and warm (the same call again). ``default`` is the library's default; ``batched`` runs the
  targets of APGD-T and FAB-T as one batch of (point, target) rows (``batch_targets=True``);
* ``original``: ``AutoAttack(model, norm='Linf', eps=eps, version='standard', seed=0).run_standard_evaluation``
  with ``bs=--batch-size``, the package as it ships (its start-up checks included). Per-stage times come from
  wrapping each component's ``perturb``.

torch runs with as many threads as there are cores. The JAX side runs first: torch's OpenMP threads spin after
each op and would slow the JAX calls made right after them. Writes
``benchmarks/results/autoattack_vs_original_<tag>/autoattack_vs_original.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
STAGES = ("apgd-ce", "apgd-t", "fab-t", "square")
VARIANTS = {"default": {}, "batched": {"batch_targets": True}}


def reference_commit(src: str) -> str:
  """The git commit of the reference checkout, or 'unknown' (e.g. a pip --target copy)."""
  try:
    return subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def run_original(net, xt, yt, eps: float, bs: int, n_iter: int = 100, n_queries: int = 5000) -> dict:
  """The original package's standard evaluation with per-stage wall times (n_iter / n_queries: the stages'
  iterations and Square's queries, set as the package's own constructor would)."""
  import torch
  from autoattack import AutoAttack
  adversary = AutoAttack(net, norm="Linf", eps=eps, version="standard", device="cpu", seed=0, verbose=False)
  for apgd in (adversary.apgd, adversary.apgd_targeted):  # APGDAttack.__init__'s checkpoint parameters
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2, apgd.n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)
  adversary.fab.n_iter = n_iter
  adversary.square.n_queries = n_queries
  stage_s = {s: 0.0 for s in STAGES}

  def timed(obj, name_of):
    forward = obj.perturb

    def perturb(*a, **k):
      t = time.perf_counter()
      out = forward(*a, **k)
      stage_s[name_of()] += time.perf_counter() - t
      return out
    obj.perturb = perturb

  timed(adversary.apgd, lambda: "apgd-ce")
  timed(adversary.apgd_targeted, lambda: "apgd-t")
  timed(adversary.fab, lambda: "fab-t" if adversary.fab.targeted else "fab")
  timed(adversary.square, lambda: "square")
  t0 = time.perf_counter()
  x_adv = adversary.run_standard_evaluation(xt, yt, bs=bs)
  wall = time.perf_counter() - t0
  with torch.no_grad():
    clean = float((net(xt).argmax(1) == yt).float().mean())
    robust = float((net(x_adv).argmax(1) == yt).float().mean())
  return {"wall_s": wall, "clean_acc": clean, "robust_acc": robust, "stage_s": stage_s,
          "max_perturbation": float((x_adv - xt).abs().max())}


def run_ours(logits_fn, x, y, eps: float, bs: int, options: dict, n_iter: int = 100,
             n_queries: int = 5000, phases=("cold", "warm")) -> dict:
  import jax
  from jaxrobust.attacks.autoattack import run_autoattack
  kwargs = {"apgd-ce": {"n_iter": n_iter}, "apgd-t": {"n_iter": n_iter}, "fab-t": {"n_iter": n_iter},
            "square": {"n_queries": n_queries}}
  out = {}
  for phase in phases:
    t0 = time.perf_counter()
    _, rep = run_autoattack(logits_fn, x, y, jax.random.key(0), eps=eps, version="standard", batch_size=bs,
                            attack_kwargs=kwargs, **options)
    out[phase] = {"wall_s": time.perf_counter() - t0, "clean_acc": rep["clean_accuracy"],
                  "robust_acc": rep["robust_accuracy"],
                  "robust_after": {k: float(v) for k, v in rep["robust_accuracy_after"].items()},
                  "stage_s": {k: float(v) for k, v in rep["seconds"].items()},
                  "max_perturbation": rep["max_perturbation"]}
    print(f"jaxrobust {options or 'default'} {phase}: {json.dumps(out[phase])}", flush=True)
  return out


def matmul_peak_gflops(repeats: int = 5) -> float:
  """The machine's measured fp32 peak: best of ``repeats`` 4096x1024 @ 1024x1024 matmuls under XLA."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((4096, 1024), jnp.float32)
  b = jnp.ones((1024, 1024), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * 4096 * 1024 * 1024 / best / 1e9


def model_gflop(apply, variables, x) -> dict:
  """XLA's FLOP count per image of one forward and of one forward + input gradient (cost analysis of the
  compiled programs on a batch of 64)."""
  import jax
  import jax.numpy as jnp
  xb = jnp.asarray(x[:64])

  def flops(f):
    cost = jax.jit(f).lower(xb).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) / xb.shape[0] / 1e9

  fwd = flops(lambda z: apply(variables, z))
  grad = flops(jax.grad(lambda z: jnp.sum(jax.nn.log_softmax(apply(variables, z))[:, 0])))
  return {"forward": fwd, "forward_input_grad": grad}


def stage_gflop(r: dict, n: int, gflop: dict, n_iter: int = 100, n_targets: int = 9,
                n_queries: int = 5000) -> dict:
  """Arithmetic each stage must do at least, from the robust counts (a lower bound: points fooled during a
  run are counted as if they left at its start, and Square's fooled points as if they needed no query).
  APGD: (n_iter + 1) forward + input gradients per point and run; FAB-T: a forward + input gradient (the
  targeted logit difference) and a forward per iteration; Square: one forward per query."""
  clean = r["clean_acc"] * n
  after = {k: v * n for k, v in r["robust_after"].items()}
  fb, f = gflop["forward_input_grad"], gflop["forward"]
  return {"apgd-ce": clean * (n_iter + 1) * fb,
          "apgd-t": after["apgd-t"] * n_targets * (n_iter + 1) * fb,
          "fab-t": after["fab-t"] * n_targets * n_iter * (fb + f),
          "square": after["square"] * n_queries * f}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--reference-src", required=True, help="folder holding the original package's autoattack/")
  p.add_argument("--run-dir", required=True, help="jaxrobust train output folder (the model)")
  p.add_argument("--n", type=int, default=200, help="test points")
  p.add_argument("--eps", type=float, default=0.3, help="Linf radius")
  p.add_argument("--batch-size", type=int, default=250,
                 help="the original's bs and our batch_size (the most points per program call)")
  p.add_argument("--n-iter", type=int, default=100, help="APGD-CE / APGD-T / FAB-T iterations (original: 100)")
  p.add_argument("--n-queries", type=int, default=5000, help="Square queries (original: 5000)")
  p.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
  p.add_argument("--skip-original", action="store_true", help="time the library only")
  p.add_argument("--skip-warm", action="store_true",
                 help="time our cascade once (cold: compilation included, an upper bound on the warm time)")
  p.add_argument("--tag", default=None, help="results folder suffix (default: the run folder's name)")
  p.add_argument("--reference-commit", default=None,
                 help="the reference's commit, recorded in the results (default: read from DIR when it is a checkout)")
  args = p.parse_args(argv)
  sys.path.insert(0, os.path.abspath(args.reference_src))

  import jax
  import torch
  from benchmarks import torch_models as tm
  from benchmarks.report import load_average, machine_info
  from jaxrobust.data import load_splits
  from jaxrobust.runs import load_run
  torch.set_num_threads(os.cpu_count() or 1)

  run = load_run(args.run_dir)
  variables, module, apply = run.variables, run.module, run.apply
  ds = load_splits(run.config["data"]).test
  x = np.asarray(ds.as_float()[:args.n], np.float32)
  y = np.asarray(ds.labels[:args.n], np.int32)
  logits_fn = jax.tree_util.Partial(apply, variables)
  mc = dict(run.config["model"])
  net = tm.build_torch_model(mc["name"], x.shape[1:], int(run.config["data"].get("num_classes", 10) or 10),
                             mean=module.mean, std=module.std,
                             **{k: v for k, v in mc.items() if k in ("channels", "hidden")})
  net = tm.port_flax_to_torch(variables, net).eval()
  xt, yt = tm.to_torch_images(x), torch.from_numpy(y.astype(np.int64))
  with torch.no_grad():
    diff = float(np.max(np.abs(net(xt[:64]).numpy() - np.asarray(jax.jit(apply)(variables, x[:64])))))
  print(f"model {mc}; max |logits jax - torch| on 64 points = {diff:.2e}", flush=True)

  results = {"n": args.n, "eps": args.eps, "batch_size": args.batch_size, "n_iter": args.n_iter,
             "n_queries": args.n_queries, "model": mc, "run_dir": args.run_dir,
             "dataset": run.config["data"]["name"], "logits_max_abs_diff": diff, "machine": machine_info(torch),
             "reference": {"repository": "fra31/auto-attack",
                           "commit": args.reference_commit or reference_commit(args.reference_src)},
             "command": "python -m benchmarks.autoattack_vs_original " + " ".join(sys.argv[1:] if argv is None
                                                                                   else argv)}
  results["load_average_start"] = load_average()
  results["matmul_peak_gflops"] = matmul_peak_gflops()
  results["model_gflop_per_image"] = model_gflop(apply, variables, x)
  print(f"matmul peak {results['matmul_peak_gflops']:.0f} GFLOP/s; model GFLOP per image "
        f"{results['model_gflop_per_image']}", flush=True)
  for v in args.variants:
    results[f"jaxrobust_{v}"] = run_ours(logits_fn, x, y, args.eps, args.batch_size, VARIANTS[v],
                                         args.n_iter, args.n_queries,
                                         ("cold",) if args.skip_warm else ("cold", "warm"))
  if not args.skip_original:
    results["original"] = run_original(net, xt, yt, args.eps, args.batch_size, args.n_iter,
                                       args.n_queries)
    print("original", json.dumps(results["original"]), flush=True)

  results["load_average_end"] = load_average()
  tag = args.tag or os.path.basename(os.path.normpath(args.run_dir))
  out = RESULTS / f"autoattack_vs_original_{tag}"
  out.mkdir(parents=True, exist_ok=True)
  lines = [f"```\n{results['command']}\n```", "",
           f"{results['machine'].get('date_utc')}; {results['machine'].get('cpu_count')} cores, load average "
           f"{results['load_average_start']} at the start, {results['load_average_end']} at the end; {args.n} "
           f"{results['dataset']} test points, Linf eps {args.eps:g}, {args.n_iter} iterations, {args.n_queries} "
           f"Square queries; model {mc['name']} ({args.run_dir}), max |logits jax - torch| {diff:.1e}; reference "
           f"fra31/auto-attack {results['reference']['commit'][:7]}", "",
           "| cascade | wall s | x original | clean % | robust % | " + " | ".join(f"{s} s" for s in STAGES) + " |",
           "|---|---:|---:|---:|---:|" + "---:|" * len(STAGES)]
  ref = results.get("original")

  def row(label, r):
    ratio = f"{r['wall_s'] / ref['wall_s']:.2f}" if ref else "-"
    return (f"| {label} | {r['wall_s']:.1f} | {ratio} | {100 * r['clean_acc']:.1f} | {100 * r['robust_acc']:.1f} | "
            + " | ".join(f"{r['stage_s'].get(s, 0.0):.1f}" for s in STAGES) + " |")
  for v in args.variants:
    for phase in results[f"jaxrobust_{v}"]:
      lines.append(row(f"jaxrobust {v}, {phase}" + (" (incl. compile)" if phase == "cold" else ""),
                       results[f"jaxrobust_{v}"][phase]))
  if ref:
    lines.append(row("original AutoAttack package", ref))
  # Arithmetic rate per stage: the least arithmetic the cascade needs (counted from our robust counts, which the
  # original shares when the robust accuracies agree) over each row's stage time, against the matmul peak.
  last = "cold" if args.skip_warm else "warm"
  work = stage_gflop(results[f"jaxrobust_{args.variants[0]}"][last], args.n, results["model_gflop_per_image"],
                     args.n_iter, 9, args.n_queries)
  peak = results["matmul_peak_gflops"]
  results["stage_gflop_lower_bound"] = work
  mflop = {k: v * 1e3 for k, v in results["model_gflop_per_image"].items()}
  lines += ["", f"GFLOP/s per stage (least arithmetic the stage needs / its time; lower bounds) and the share of "
            f"the measured matmul peak, {peak:.0f} GFLOP/s; model {mflop['forward']:.1f} MFLOP per forward, "
            f"{mflop['forward_input_grad']:.1f} MFLOP per forward + input gradient (XLA cost analysis)", "",
            "| cascade | " + " | ".join(STAGES) + " |", "|---|" + "---:|" * len(STAGES)]
  rated = [(f"jaxrobust {v}, {last}", results[f"jaxrobust_{v}"][last]) for v in args.variants]
  rated += [("original AutoAttack package", ref)] if ref else []
  for label, r in rated:
    lines.append(f"| {label} | " + " | ".join(
        f"{work[s] / r['stage_s'][s]:.0f} ({work[s] / r['stage_s'][s] / peak:.0%})" if r["stage_s"].get(s) else "-"
        for s in STAGES) + " |")
  (out / "autoattack_vs_original.json").write_text(json.dumps(results, indent=2) + "\n")
  (out / "autoattack_vs_original.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
