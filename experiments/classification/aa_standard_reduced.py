"""AutoAttack standard on the models of the longer reduced protocol.

    python -m experiments.classification.aa_standard_reduced \
        [--runs runs/classification_reduced_long2 runs/classification_reduced_long3] \
        [--out experiments/classification/results/results_reduced_long_aa_standard]

Loads every run directory's last checkpoint (``jaxrobust.runs.load_run``) and runs ``run_autoattack(version='standard')`` with the original parameters
(APGD-CE 100 it, APGD-T 9 x 100 it, FAB-T 9 x 100 it, Square 5000 queries) on the run's own test
subset (the first 300 Fashion-MNIST test images), Linf eps of the run's PGD-20 evaluation, key
PRNGKey(seed + 2) as ``run_reduced.py``'s AA-lite column. The clean, PGD-20 and AA-lite numbers
next to it are read from the JSON files that ``run_reduced.py`` wrote for the same runs.
Models of one architecture share one apply function, so every stage compiles once per bucket
shape for all of them.
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

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_RUNS = [os.path.join("runs", "classification_reduced_long2"), os.path.join("runs", "classification_reduced_long3")]
DEFAULT_TABLES = [os.path.join(RESULTS, "results_reduced_long.json"),
                  os.path.join(RESULTS, "results_reduced_long_rest.json")]
ORDER = ("standard", "pgd_at", "trades", "mart", "gairat", "mail_at", "mail_trades", "mail_mart", "spat", "awp_at",
         "alp", "fat")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs", nargs="*", default=DEFAULT_RUNS, help="directories holding one run per method")
  p.add_argument("--tables", nargs="*", default=DEFAULT_TABLES, help="run_reduced.py JSON results to quote")
  p.add_argument("--methods", nargs="*", default=None, help="only these methods")
  p.add_argument("--out", default=os.path.join(RESULTS, "results_reduced_long_aa_standard"))
  args = p.parse_args(argv)

  from jaxrobust.attacks.autoattack import run_autoattack
  from jaxrobust.runs import load_run
  from jaxrobust.data import load_splits

  quoted = {}
  for path in args.tables:
    if os.path.exists(path):
      with open(path) as f:
        quoted.update(json.load(f)["results"])
  run_dirs = {}
  for root in args.runs:
    for name in sorted(os.listdir(root)):
      if os.path.exists(os.path.join(root, name, "config.json")):
        run_dirs[name] = os.path.join(root, name)
  names = [m for m in ORDER if m in run_dirs] + sorted(set(run_dirs) - set(ORDER))
  if args.methods:
    names = [m for m in names if m in args.methods]

  command = "python -m experiments.classification.aa_standard_reduced " + " ".join(
      sys.argv[1:] if argv is None else argv)
  applies = {}  # one apply per architecture: compiled stages are reused across models
  results = {}
  t_start = time.perf_counter()
  for name in names:
    run = load_run(run_dirs[name])
    cfg = run.config
    arch = json.dumps(cfg["model"], sort_keys=True)
    applies.setdefault(arch, run.apply)
    fn = jax.tree_util.Partial(applies[arch], run.variables)
    ds = load_splits(cfg["data"]).test
    x, y = jax.numpy.asarray(ds.as_float()), jax.numpy.asarray(ds.labels)
    eps = float(cfg["eval"]["attacks"][0]["eps"])  # the PGD-20 column's eps (0.1 for Fashion-MNIST)
    t0 = time.perf_counter()
    _, rep = run_autoattack(fn, x, y, jax.random.PRNGKey(int(cfg.get("seed", 0)) + 2), eps=eps,
                            version="standard", verbose=True)
    seconds = time.perf_counter() - t0
    q = quoted.get(name, {})
    results[name] = {
        "run_dir": run_dirs[name], "n": int(x.shape[0]), "eps": eps, "step": run.step,
        "clean": rep["clean_accuracy"], "aa_standard": rep["robust_accuracy"],
        "aa_after": rep["robust_accuracy_after"], "stage_seconds": rep["seconds"], "seconds": seconds,
        "pgd20": q.get("pgd20"), "aa_lite": q.get("aa"), "clean_quoted": q.get("clean")}
    print(f"{name}: clean {rep['clean_accuracy']:.3f} AA {rep['robust_accuracy']:.3f} ({seconds:.0f} s)", flush=True)
    _write(args.out, command, results, time.perf_counter() - t_start, args.tables)
  return 0


def _pct(v):
  return "-" if v is None else f"{100 * v:.1f}"


def _write(out: str, command: str, results: dict, total_s: float, tables=DEFAULT_TABLES) -> None:
  meta = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU cores; "
                     f"jax {jax.__version__} {jax.default_backend()}",
          "attack": "AutoAttack standard: APGD-CE (100 it) -> APGD-T (9 x 100 it) -> FAB-T (9 x 100 it) -> "
                    "Square (5000 queries), original parameters, on the points still robust",
          "total_seconds": total_s}
  with open(out + ".json", "w") as f:
    json.dump({"meta": meta, "results": results}, f, indent=2)
  lines = ["# AutoAttack standard on the longer reduced protocol (Fashion-MNIST, eps 0.1)", "", "```", command, "```",
           "", f"- date: {meta['date']}", f"- machine: {meta['machine']}", f"- attack: {meta['attack']}",
           "- clean / PGD-20 / AA-lite: quoted from " + ", ".join(os.path.basename(t) for t in tables)
           + " (same checkpoints, same points)",
           f"- total wall time: {total_s / 60:.1f} min", "",
           "| method | clean | PGD-20 | AA-lite | AA standard | after APGD-CE | after APGD-T | after FAB-T | seconds |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, r in results.items():
    a = r["aa_after"]
    lines.append(f"| {name} | {_pct(r['clean'])} | {_pct(r['pgd20'])} | {_pct(r['aa_lite'])} | "
                 f"**{_pct(r['aa_standard'])}** | {_pct(a.get('apgd-ce'))} | {_pct(a.get('apgd-t'))} | "
                 f"{_pct(a.get('fab-t'))} | {r['seconds']:.0f} |")
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  sys.exit(main())
