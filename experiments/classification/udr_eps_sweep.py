"""UDR's Table 2 on the reduced protocol: PGD-20 robust accuracy at test eps above the training eps.

    python -m experiments.classification.udr_eps_sweep \
        [--baseline-runs runs/classification_reduced_long2 runs/classification_reduced_long3] \
        [--udr-runs runs/classification_reduced_udr] [--multipliers 1 1.25 1.5 1.75 2] \
        [--controls runs/classification_reduced_udr_control/pgd_at_eps0.13] \
        [--out experiments/classification/results/results_reduced_long_udr_eps_sweep]

UDR's claim (Bui et al., ICLR 2022, Table 2) is that the soft ball makes a model robust beyond the eps it was
trained at. For each pair (pgd_at, udr_pgd), (trades, udr_trades), (mart, udr_mart),
(awp_at, udr_awp_at) this loads the trained checkpoints of ``run_reduced.py`` and evaluates
PGD-20 (uniform start, step 2.5 eps / 20, the Madry rule) at eps = m x the training eps (0.1) on
the run's own test subset, with ``RobustEvaluator`` and key PRNGKey(seed + 1) as the PGD-20 column.
"Avg gain" is, as in Table 2, the mean over the eps values of UDR minus its baseline.
``--controls`` adds runs evaluated at the same eps values, e.g. PGD-AT trained with a larger hard
ball (UDR's Table 6 control: is the soft ball more than a bigger eps?); their "Avg gain" is over pgd_at.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import jax
import numpy as np

from jaxrobust import parallel
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.runs import load_run
from jaxrobust.data import load_splits

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

PAIRS = (("pgd_at", "udr_pgd"), ("trades", "udr_trades"), ("mart", "udr_mart"), ("awp_at", "udr_awp_at"))


def _runs(dirs):
  out = {}
  for d in dirs:
    if os.path.isdir(d):
      for name in sorted(os.listdir(d)):
        if os.path.exists(os.path.join(d, name, "config.json")):
          out[name] = os.path.join(d, name)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--baseline-runs", nargs="*", default=[os.path.join("runs", "classification_reduced_long2"),
                                                        os.path.join("runs", "classification_reduced_long3")])
  p.add_argument("--udr-runs", nargs="*", default=[os.path.join("runs", "classification_reduced_udr")])
  p.add_argument("--multipliers", nargs="*", type=float, default=[1.0, 1.25, 1.5, 1.75, 2.0])
  p.add_argument("--eps", type=float, default=0.1, help="the training eps the multipliers scale")
  p.add_argument("--controls", nargs="*", default=[], help="extra run directories (rows named by directory)")
  p.add_argument("--out", default=os.path.join(RESULTS, "results_reduced_long_udr_eps_sweep"))
  args = p.parse_args(argv)
  runs = _runs(args.baseline_runs)
  runs.update(_runs(args.udr_runs))
  missing = [n for pair in PAIRS for n in pair if n not in runs]
  if missing:
    raise SystemExit(f"missing run directories for {missing}; train them with run_reduced.py first")
  command = "python -m experiments.classification.udr_eps_sweep " + " ".join(sys.argv[1:] if argv is None else argv)
  controls = {os.path.basename(os.path.normpath(d)): d for d in args.controls}
  runs.update(controls)
  eps_values = [round(m * args.eps, 6) for m in args.multipliers]
  results, evaluator = {}, None
  for name in [n for pair in PAIRS for n in pair] + list(controls):
    run = load_run(runs[name])
    cfg = run.config
    if evaluator is None:  # one architecture for all: the compiled PGD programs are shared
      evaluator = RobustEvaluator(run.apply, mesh=parallel.make_mesh(cfg["train"].get("num_devices")))
    specs = [{"name": "pgd", "label": f"eps={e:g}", "eps": e, "steps": 20, "step_size": 2.5 * e / 20,
              "init": "uniform"} for e in eps_values]
    rep = evaluator.evaluate(run.variables, load_splits(cfg["data"]).test, specs, batch_size=250, progress=False,
                             key=jax.random.PRNGKey(int(cfg.get("seed", 0)) + 1))
    results[name] = {"run_dir": runs[name], "n": rep["n"], "clean": rep["clean_acc"],
                     "train_eps": float(cfg["method"].get("eps", float("nan"))),
                     "eps": eps_values, "pgd20": [rep["robust_acc"][s["label"]] for s in specs]}
    print(f"{name}: clean {rep['clean_acc']:.3f} " + " ".join(
        f"{s['label']} {a:.3f}" for s, a in zip(specs, results[name]["pgd20"])), flush=True)
  for base, udr in PAIRS + tuple(("pgd_at", c) for c in controls):  # controls: gain over PGD-AT at eps
    gain = np.asarray(results[udr]["pgd20"]) - np.asarray(results[base]["pgd20"])
    results[udr]["avg_gain_over_" + base] = float(gain.mean())
  meta = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU cores; jax {jax.__version__}",
          "attack": "PGD-20, uniform start, step 2.5 eps / 20, CE", "multipliers": args.multipliers}
  with open(args.out + ".json", "w") as f:
    json.dump({"meta": meta, "results": results}, f, indent=2)
  lines = ["# UDR's Table 2 on the reduced protocol: PGD-20 at test eps above the training eps (0.1)", "",
           "```", command, "```", "", f"- date: {meta['date']}", f"- machine: {meta['machine']}",
           f"- attack: {meta['attack']}; {results[PAIRS[0][0]]['n']} test points", "",
           "| method | clean | " + " | ".join(f"eps {e:g}" for e in eps_values) + " | Avg gain |",
           "|---|---:|" + "---:|" * len(eps_values) + "---:|"]
  rows = [(name, udr if name == udr else None) for base, udr in PAIRS for name in (base, udr)]
  rows += [(c, c) for c in controls]
  for name, gain_row in rows:
    r = results[name]
    gain = next((v for k, v in r.items() if k.startswith("avg_gain_over_")), None) if gain_row else None
    lines.append(f"| {name} | {100 * r['clean']:.1f} | " + " | ".join(f"{100 * a:.1f}" for a in r["pgd20"])
                 + f" | {'-' if gain is None else f'{100 * gain:+.1f}'} |")
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
