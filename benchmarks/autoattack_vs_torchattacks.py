"""AutoAttack standard (Croce & Hein 2020), ours vs the same cascade from torchattacks' components.

    python -m benchmarks.autoattack_vs_torchattacks [--n 500] [--out DIR]

1. Trains (or reuses) a robust SmallCNN (the TRADES MNIST net, 32-64 channels, fc 200) on
   Fashion-MNIST with PGD-AT: ``jaxrobust train --config fashion_mnist_reduced`` at full width,
   eps 0.1, PGD-10 (step 0.025), 3 epochs over 2048 images.
2. On the first ``--n`` test images, with the same weights (ported to torch):
   * ``jaxrobust``: ``run_autoattack(version='standard')`` - APGD-CE (100 it) -> APGD-T
     (9 targets x 100 it) -> FAB-T (9 targets x 100 it) -> Square (5000 queries), each stage on the
     points still robust;
   * ``torchattacks cascade``: the same four stages with the original parameters built from
     torchattacks' components (APGD, APGDT, FAB(multi_targeted=True), Square) in a MultiAttack,
     which also attacks only the points still robust;
   * ``torchattacks AutoAttack(version='standard')`` as shipped: its APGD/FAB stages use 10
     iterations, so it is weaker and faster; reported for reference, not compared as equal work.
3. Writes wall times, robust accuracies and the machine to ``OUT/autoattack_vs_torchattacks.json``
   and a markdown table next to it.

Needs the [torch] extra (torch 2.13 CPU, scipy) and ``pip install --no-deps torchattacks``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

EPS = 0.1
RUN_DIR = "runs/aa_compare_pgd_at"


def train_model(run_dir: str) -> None:
  if os.path.exists(os.path.join(run_dir, "report.json")):
    print(f"reusing {run_dir}")
    return
  cmd = [sys.executable, "-m", "jaxrobust.cli", "train", "--config", "fashion_mnist_reduced",
         "--output-dir", run_dir, "--no-progress", "model.channels=[32,64]", "model.hidden=200",
         "method.name=pgd_at", f"method.eps={EPS}", f"method.step_size={EPS / 4}", "method.steps=10",
         "eval.attacks=[]"]
  print("$", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--n", type=int, default=500, help="test points")
  p.add_argument("--out", default=None,
                 help="output folder (default benchmarks/results/autoattack_vs_torchattacks_n<N>)")
  p.add_argument("--run-dir", default=RUN_DIR)
  p.add_argument("--skip-shipped", action="store_true", help="skip torchattacks' own AutoAttack")
  p.add_argument("--skip-warm", action="store_true",
                 help="time our cascade once (cold, compilation included) instead of cold + warm")
  p.add_argument("--batch-size", type=int, default=128,
                 help="jaxrobust bucket size for the still-robust points (None-like 0: whole batch, masked)")
  args = p.parse_args(argv)
  args.out = args.out or f"benchmarks/results/autoattack_vs_torchattacks_n{args.n}"

  train_model(args.run_dir)
  import jax
  import torch
  import torchattacks
  from benchmarks import torch_models as tm
  from benchmarks.report import machine_info
  from jaxrobust.attacks.autoattack import run_autoattack
  from jaxrobust.data import load_splits
  from jaxrobust.runs import load_run

  run = load_run(args.run_dir)
  variables, module, apply = run.variables, run.module, run.apply
  ds = load_splits(run.config["data"]).test
  x = np.asarray(ds.as_float()[:args.n], np.float32)
  y = np.asarray(ds.labels[:args.n], np.int32)
  logits_fn = jax.tree_util.Partial(apply, variables)

  mc = run.config["model"]
  net = tm.build_torch_model("small_cnn", x.shape[1:], 10, mean=module.mean, std=module.std)
  net = tm.port_flax_to_torch(variables, net).eval()
  xt, yt = tm.to_torch_images(x), torch.from_numpy(y.astype(np.int64))
  with torch.no_grad():
    diff = float(np.max(np.abs(net(xt).numpy() - np.asarray(jax.jit(apply)(variables, x)))))
  print(f"model {mc}; max |logits jax - torch| = {diff:.2e}", flush=True)

  results = {"n": args.n, "eps": EPS, "model": mc, "run_dir": args.run_dir, "logits_max_abs_diff": diff,
             "machine": machine_info(torch),
             "command": "python -m benchmarks.autoattack_vs_torchattacks " + " ".join(sys.argv[1:])}

  # --- ours ---------------------------------------------------------------------------------
  t0 = time.perf_counter()
  bs = args.batch_size or None
  _, rep = run_autoattack(logits_fn, x, y, jax.random.key(0), eps=EPS, version="standard", batch_size=bs,
                          verbose=True)
  ours_s = time.perf_counter() - t0
  results["jaxrobust"] = {"wall_s": ours_s, "clean_acc": float(rep["clean_accuracy"]),
                          "robust_acc": float(rep["robust_accuracy"]),
                          "robust_after": {k: float(v) for k, v in rep["robust_accuracy_after"].items()},
                          "stage_s": {k: float(v) for k, v in rep["seconds"].items()},
                          "note": "includes XLA compilation of every stage (first call)"}
  print("jaxrobust", json.dumps(results["jaxrobust"]), flush=True)
  if args.skip_warm:  # the cold figure stands in (an upper bound on the warm one)
    results["jaxrobust"]["wall_s_warm"] = None
    results["jaxrobust"]["stage_s_warm"] = {}
  else:  # second call: same programs, compiled already
    t0 = time.perf_counter()
    _, rep2 = run_autoattack(logits_fn, x, y, jax.random.key(0), eps=EPS, version="standard", batch_size=bs,
                             verbose=True)
    results["jaxrobust"]["wall_s_warm"] = time.perf_counter() - t0
    results["jaxrobust"]["stage_s_warm"] = {k: float(v) for k, v in rep2["seconds"].items()}
    print("jaxrobust warm", results["jaxrobust"]["wall_s_warm"], flush=True)

  # --- torchattacks components with the original parameters ----------------------------------
  def robust_acc(x_adv):
    with torch.no_grad():
      return float((net(x_adv).argmax(1) == yt).float().mean())

  stages = [
      ("apgd-ce", torchattacks.APGD(net, norm="Linf", eps=EPS, steps=100, n_restarts=1, loss="ce", seed=0)),
      ("apgd-t", torchattacks.APGDT(net, norm="Linf", eps=EPS, steps=100, n_restarts=1, n_classes=10, seed=0)),
      ("fab-t", torchattacks.FAB(net, norm="Linf", eps=EPS, steps=100, n_restarts=1, multi_targeted=True,
                                 n_classes=10, seed=0)),
      ("square", torchattacks.Square(net, norm="Linf", eps=EPS, n_queries=5000, n_restarts=1, p_init=0.8,
                                     seed=0)),
  ]
  stage_s = {}

  def timed(name, forward):  # per-stage wall time inside MultiAttack
    def run(*a, **k):
      t = time.perf_counter()
      out = forward(*a, **k)
      stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - t
      return out
    return run

  for name, atk in stages:
    atk.forward = timed(name, atk.forward)
  cascade = torchattacks.MultiAttack([a for _, a in stages])
  t0 = time.perf_counter()
  x_adv = cascade(xt, yt)
  torch_s = time.perf_counter() - t0
  with torch.no_grad():
    clean = float((net(xt).argmax(1) == yt).float().mean())
  results["torchattacks_cascade"] = {"wall_s": torch_s, "clean_acc": clean, "robust_acc": robust_acc(x_adv),
                                     "max_perturbation": float((x_adv - xt).abs().max()), "stage_s": stage_s}
  print("torchattacks cascade", json.dumps(results["torchattacks_cascade"]), flush=True)

  if not args.skip_shipped:
    aa = torchattacks.AutoAttack(net, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0)
    t0 = time.perf_counter()
    x_adv = aa(xt, yt)
    results["torchattacks_autoattack_shipped"] = {
        "wall_s": time.perf_counter() - t0, "robust_acc": robust_acc(x_adv),
        "note": "torchattacks AutoAttack(version='standard'): APGD/APGD-T/FAB with 10 iterations"}
    print("torchattacks shipped", json.dumps(results["torchattacks_autoattack_shipped"]), flush=True)

  ours, theirs = results["jaxrobust"], results["torchattacks_cascade"]
  results["time_ratio_ours_over_torch_cascade"] = ours["wall_s"] / theirs["wall_s"]
  warm = ours["wall_s_warm"]
  results["time_ratio_warm_ours_over_torch_cascade"] = None if warm is None else warm / theirs["wall_s"]
  results["robust_acc_diff_pp"] = 100 * (ours["robust_acc"] - theirs["robust_acc"])

  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "autoattack_vs_torchattacks.json"), "w") as f:
    json.dump(results, f, indent=2)
  lines = [f"```\n{results['command']}\n```", "",
           f"{results['machine'].get('date_utc')} - {results['machine'].get('cpu_model')} - "
           f"{results['machine'].get('cpu_count')} cores; {args.n} Fashion-MNIST test points, Linf eps {EPS}; "
           f"SmallCNN PGD-AT ({args.run_dir}); max |logits jax - torch| {diff:.1e}", "",
           "| cascade | wall s | clean % | robust % |", "|---|---:|---:|---:|",
           f"| jaxrobust AutoAttack standard (cold: incl. compile) | {ours['wall_s']:.1f} | "
           f"{100 * ours['clean_acc']:.1f} | {100 * ours['robust_acc']:.1f} |",
           (f"| jaxrobust AutoAttack standard (warm) | {warm:.1f} | "
            f"{100 * ours['clean_acc']:.1f} | {100 * ours['robust_acc']:.1f} |") if warm is not None else
           "| jaxrobust AutoAttack standard (warm) | not run (--skip-warm) | | |",
           f"| torchattacks components, original parameters | {theirs['wall_s']:.1f} | "
           f"{100 * theirs['clean_acc']:.1f} | {100 * theirs['robust_acc']:.1f} |"]
  if "torchattacks_autoattack_shipped" in results:
    s = results["torchattacks_autoattack_shipped"]
    lines.append(f"| torchattacks AutoAttack('standard') as shipped (10-it APGD/FAB; weaker) | {s['wall_s']:.1f} | "
                 f"{100 * clean:.1f} | {100 * s['robust_acc']:.1f} |")
  ratio_warm = results["time_ratio_warm_ours_over_torch_cascade"]
  lines += ["", f"time ratio ours/torch cascade: {results['time_ratio_ours_over_torch_cascade']:.2f} (cold), "
            f"{'-' if ratio_warm is None else f'{ratio_warm:.2f}'} (warm); robust accuracy difference "
            f"{results['robust_acc_diff_pp']:+.1f} pp", "",
            "jaxrobust robust accuracy after each stage: " + ", ".join(
                f"{k} {100 * v:.1f}%" for k, v in ours["robust_after"].items()),
            "jaxrobust seconds per stage (cold): " + ", ".join(f"{k} {v:.1f}" for k, v in ours["stage_s"].items()),
            "jaxrobust seconds per stage (warm): " + ", ".join(
                f"{k} {v:.1f}" for k, v in ours["stage_s_warm"].items()),
            "torchattacks seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in theirs["stage_s"].items())]
  with open(os.path.join(args.out, "autoattack_vs_torchattacks.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
