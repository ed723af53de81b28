"""Reduced CPU protocol for the representation methods (ADR, ASCL; Bui et al. 2020, 2021).

Trains Standard, PGD-AT, TRADES, ADR-ADV, ADR-TRADES and ASCL with each selection strategy (Global,
Hard, Soft, Leaked) on the reduced Fashion-MNIST budget of experiments/classification (the
``fashion_mnist_reduced`` config plus per-method overrides, i.e. exactly `jaxrobust train`), for
several seeds; then evaluates every model on the same test points: clean, PGD-20, multi-targeted
PGD-20 (mPGD), AutoAttack standard on the first --aa-points, and R-DIV (latent divergence under the
PGD-20 points). From the repository root:

    python -m experiments.representation.run_reduced --phase train   # ~1 min per run on 2 cores
    python -m experiments.representation.run_reduced --phase eval    # writes results/results_reduced.{json,md}

Both phases skip work already done (a trained run directory, an evaluated run in the JSON), so a
killed run resumes. ``--runs a b`` restricts to some rows, ``--seeds 0 1 2`` sets the seeds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from experiments.classification.run_reduced import DATASETS, cli_command, evaluate_aa, reduced_config

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# row label -> (method name, extra method keys on top of the reduced section)
RUNS = {
    "standard": ("standard", {}),
    "pgd_at": ("pgd_at", {}),
    "trades": ("trades", {}),
    "adr_adv": ("adr_adv", {}),
    "adr_trades": ("adr_trades", {}),
    "ascl_global": ("ascl", {"strategy": "global"}),
    "ascl_hard": ("ascl", {"strategy": "hard"}),
    "ascl_soft": ("ascl", {"strategy": "soft"}),
    "ascl_leaked": ("ascl", {"strategy": "leaked"}),
}


def _defaults(args):
  """The reduced protocol's defaults (experiments/classification/run_reduced.py)."""
  return argparse.Namespace(dataset="fashion_mnist", epochs=args.epochs, train_subset=args.train_subset,
                            test_subset=args.test_subset, batch_size=args.batch_size, steps=5, lr=0.05, awp_warmup=0,
                            seed=0, runs_dir=args.runs_dir)


def run_config(label: str, seed: int, args) -> tuple[dict, list[str]]:
  from jaxrobust.configs import validate_config
  method, extra = RUNS[label]
  base = _defaults(args)
  base.seed = seed
  cfg, over = reduced_config(method, base)
  cfg["method"].update(extra)
  over = [o for o in over if o.split("=", 1)[0] not in {f"method.{k}" for k in extra}]
  over += [f"method.{k}={v}" for k, v in extra.items()]
  cfg["output_dir"] = os.path.join(args.runs_dir, f"{label}_s{seed}")
  validate_config(cfg)
  return cfg, over


def train(args) -> None:
  from jaxrobust.data import load_splits
  from experiments.training import fit_run
  data = None
  for seed in args.seeds:
    for label in args.runs:
      cfg, over = run_config(label, seed, args)
      record_path = os.path.join(cfg["output_dir"], "train_record.json")
      if os.path.exists(record_path):
        continue
      if data is None:
        data = load_splits(cfg["data"])
      print(f"\n=== {label} seed {seed}\n{cli_command(over)}", flush=True)
      state, seconds, log = fit_run(cfg, data)
      rates = [r["examples_per_s"] for r in log if "examples_per_s" in r][1:]  # first record includes compile
      record = {"label": label, "seed": seed, "command": cli_command(over), "train_seconds": seconds,
                "steps": int(state.step), "median_examples_per_s": float(np.median(rates)) if rates else None,
                "last_metrics": {k: round(float(v), 4) for k, v in log[-1].items()
                                 if k in ("loss", "acc", "adv_acc", "loss_scl", "scl_positives",
                                          "scl_negatives", "loss_lc", "loss_gb")}}
      with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
      print(f"{label} s{seed}: {seconds:.0f} s, {record['last_metrics']}", flush=True)


def evaluate(args) -> None:
  from jaxrobust.evaluate.latent_divergence import LatentDivergence
  from jaxrobust.evaluate.robust import DEFAULT_METRICS
  from jaxrobust.evaluate.robust import RobustEvaluator
  from jaxrobust.models import make_features_apply
  from jaxrobust.runs import load_run
  from jaxrobust.data import load_splits
  eps = DATASETS["fashion_mnist"]["eps"]
  step = DATASETS["fashion_mnist"]["eval_step"]
  attacks = [{"name": "pgd", "label": "PGD-20", "eps": eps, "steps": 20, "step_size": step},
             {"name": "mpgd", "label": "mPGD-20", "eps": eps, "steps": 20, "step_size": step}]
  out_json = args.out + ".json"
  results = {}
  if os.path.exists(out_json):
    with open(out_json) as f:
      results = json.load(f)["results"]
  test = None
  evaluator = None
  t_start = time.perf_counter()
  for seed in args.seeds:
    for label in args.runs:
      key = f"{label}_s{seed}"
      run_dir = os.path.join(args.runs_dir, key)
      if key in results or not os.path.exists(os.path.join(run_dir, "train_record.json")):
        continue
      with open(os.path.join(run_dir, "train_record.json")) as f:
        record = json.load(f)
      run = load_run(run_dir)
      if test is None:
        test = load_splits(run.config["data"]).test
      if evaluator is None:  # one architecture: the compiled programs take the variables as input
        evaluator = RobustEvaluator(run.apply, features_apply=make_features_apply(run.module))
      t0 = time.perf_counter()
      # R-DIV (Bui et al. 2021, sec. 2) from the latents of the PGD-20 points, pools mixed as written.
      metrics = [*DEFAULT_METRICS, LatentDivergence(["PGD-20"], pools="mixed")]
      rep = evaluator.evaluate(run.variables, test, attacks, batch_size=250, progress=False,
                               key=jax.random.PRNGKey(seed + 1), metrics=metrics)
      row = {"label": label, "seed": seed, "clean": rep["clean_acc"], "pgd20": rep["robust_acc"]["PGD-20"],
             "mpgd20": rep["robust_acc"]["mPGD-20"], "n": rep["n"], "pgd_eval_seconds": time.perf_counter() - t0,
             **{k: record[k] for k in ("train_seconds", "steps", "median_examples_per_s", "last_metrics",
                                       "command")}}
      rdiv = rep["r_div"]["PGD-20"]
      row.update(rdiv=rdiv["ratio"], rdiv_d_plus=rdiv["d_plus"], rdiv_d_minus=rdiv["d_minus"])
      if args.aa_points:
        aa = evaluate_aa(run.apply, run.variables, test.take(args.aa_points), eps, "standard", seed + 2)
        row.update(aa=aa["robust_acc"], aa_n=args.aa_points, aa_seconds=aa["seconds"])
      results[key] = row
      print(f"{key}: clean {row['clean']:.3f} PGD-20 {row['pgd20']:.3f} mPGD-20 {row['mpgd20']:.3f} "
            f"AA {row.get('aa', float('nan')):.3f} R-DIV {row.get('rdiv', float('nan')):.3f}", flush=True)
      write(args, results, time.perf_counter() - t_start)
  write(args, results, time.perf_counter() - t_start)


def _mean_sd(values):
  v = np.asarray(values, float)
  return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"))


def write(args, results, total_s, *, json_too: bool = True) -> None:
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  command = "python -m experiments.representation.run_reduced " + " ".join(sys.argv[1:])
  meta = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU cores; "
                     f"jax {jax.__version__} {jax.default_backend()}",
          "eval_seconds_this_call": total_s}
  if json_too:
    with open(args.out + ".json", "w") as f:
      json.dump({"meta": meta, "results": results}, f, indent=2)
  cols = [("clean", "clean"), ("pgd20", "PGD-20"), ("mpgd20", "mPGD-20"), ("aa", "AA"), ("rdiv", "R-DIV")]
  seeds = " ".join(str(x) for x in sorted({r["seed"] for r in results.values()}))
  aa_n = sorted({r["aa_n"] for r in results.values() if "aa_n" in r})
  lines = ["# Representation methods, reduced protocol (Fashion-MNIST, eps 0.1)", "",
           "```", f"python -m experiments.representation.run_reduced --phase train --seeds {seeds}",
           f"python -m experiments.representation.run_reduced --phase eval --seeds {seeds}", "```", "",
           f"- written {meta['date']} on {meta['machine']}",
           "- data: first 2048 Fashion-MNIST training images, first 500 test images; SmallCNN (16, 32) / 100; "
           "3 epochs of batch 64, SGD 0.05 x0.1 at epoch 2; training PGD-5, eps 0.1, step 0.05",
           "- clean, PGD-20 and mPGD-20 (eps 0.1, step 0.01) on the 500 test images; AutoAttack standard on the "
           f"first {', '.join(map(str, aa_n)) or '-'}; R-DIV under the PGD-20 points (mixed pools, minibatches of 128)",
           "- mean over seeds ± sample standard deviation; accuracies in %; lower R-DIV = more compact classes",
           "- train s and ex/s were measured while other jobs shared the 2 cores: not a speed comparison "
           "(BENCHMARKS.md 1a has the step times)", "",
           "| method | seeds | " + " | ".join(c[1] for c in cols) + " | train s | ex/s |",
           "|---|---|" + "---|" * len(cols) + "---|---|"]
  for label in RUNS:
    rows = [r for r in results.values() if r["label"] == label]
    if not rows:
      continue
    cells = []
    for key, _ in cols:
      vals = [r[key] for r in rows if key in r]
      if not vals:
        cells.append("-")
        continue
      m, sd = _mean_sd(vals)
      scale, fmt = (1.0, "{:.3f}") if key == "rdiv" else (100.0, "{:.1f}")
      cells.append(fmt.format(scale * m) + ("" if np.isnan(sd) else " ± " + fmt.format(scale * sd)))
    ex = [r["median_examples_per_s"] for r in rows if r.get("median_examples_per_s")]
    lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) +
                 f" | {np.mean([r['train_seconds'] for r in rows]):.0f} | {np.mean(ex) if ex else float('nan'):.0f} |")
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--phase", choices=("train", "eval", "report"), required=True,
                 help="train the runs, evaluate them, or rewrite the .md from the .json")
  p.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
  p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--train-subset", type=int, default=2048)
  p.add_argument("--test-subset", type=int, default=500)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--aa-points", type=int, default=200, help="AutoAttack standard on this many test points; 0: none")
  p.add_argument("--runs-dir", default=os.path.join("runs", "representation_reduced"))
  p.add_argument("--out", default=os.path.join(RESULTS, "results_reduced"), help="output path without extension")
  args = p.parse_args(argv)
  if args.phase == "train":
    train(args)
  elif args.phase == "eval":
    evaluate(args)
  else:
    with open(args.out + ".json") as f:
      write(args, json.load(f)["results"], 0.0, json_too=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())
