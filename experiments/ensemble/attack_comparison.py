"""Reduced CPU reproduction of TA-MOO's attack comparison (Bui et al. 2023, TMLR; spec cce_tamoo.md B5-B10).

Uniform vs MinMax vs MOO (MGDA) vs TA-MOO, as attack success rates A-All / A-Avg / A-i (spec B9), on
* ENS: an ensemble of four differently built, separately PGD-AT-trained CIFAR-10 members (set "D"-like), CE;
* UNI: groups of K = 4 test images sharing one perturbation, on the first member alone, CW (kappa 50);
* EoT: the 7 transformations I H V C G B R at p = 1 (deterministic), on the first member alone, CW;
each for several attack seeds (the random start). From the repository root (worktree):

    python -m experiments.ensemble.attack_comparison                 # train the victims, attack, write results/
    python -m experiments.ensemble.attack_comparison --phase train   # the four victims only (~10 min, 2 cores)
    python -m experiments.ensemble.attack_comparison --phase attack  # the attacks (skips those in the JSON)
    python -m experiments.ensemble.attack_comparison --phase report  # rewrite the .md from the .json
    python -m experiments.ensemble.attack_comparison --quick         # tiny shapes, a smoke run (temp folders)

The victims are real `jaxrobust train` runs (the printed command of each), cached in --runs-dir (gitignored
runs/); every phase skips work already done, so a killed run resumes. Settings are declared below; the thesis's
values, where they differ, are noted beside them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# ---------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------
DATASET = "cifar10"
EPS = 8 / 255
STEP_SIZE = 2 / 255

# The ensemble members: (label, model section). Four architectures for set-"D"-like diversity (the thesis:
# ResNet-18, VGG-16, GoogLeNet, EfficientNet-B0), small enough to train on 2 CPU cores. Member 0 is also the
# single UNI / EoT victim (the thesis: ResNet-18).
MEMBERS = (
    ("cnn", {"name": "small_cnn", "channels": (32, 64), "hidden": 128, "conv_padding": 1}),  # C&W CIFAR CNN, half width
    ("resnet20", {"name": "resnet20"}),
    ("lenet5", {"name": "lenet5", "conv1_padding": 0}),
    ("mlp", {"name": "mlp", "hidden_sizes": (512, 256)}),
)
# PGD-AT of each member (the thesis: PGD-20 AT, SGD 0.1 cosine, 200 epochs on all 50k images).
VICTIM_TRAINING = {
    "train_subset": 8000, "subset_seed": 0, "epochs": 3, "batch_size": 128,
    "method": {"name": "pgd_at", "eps": EPS, "step_size": STEP_SIZE, "steps": 3, "init": "uniform"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine"},
}
VICTIM_PGD_STEPS = 10  # the victims' own PGD-10 robust accuracy on the ENS points, for the record

WEIGHTINGS = ("uniform", "minmax", "mgda", "tamoo")  # mgda is the thesis's "MOO"
WEIGHTING_LABELS = {"clean": "no attack", "tamoo_lambda10": "TA-MOO, lambda 10 (code's UNI)", "uniform": "Uniform", "minmax": "MinMax", "mgda": "MOO", "tamoo": "TA-MOO"}
# "clean": the goals already reached at x itself (0 steps, no random start): the part of each rate that is free,
# large for weak victims (an ENS member's goal is a wrong label, so its clean errors count as successes).
# moo_attack_with_info options shared by all: the thesis defaults (spec B7; B11 recommends them as default):
# delta_0 ~ U(-eps, eps), weights at delta_t before the step, K = 10 inner GD steps of eta_w = 0.005 for MOO and
# TA-MOO, lambda = 100, no entropy bonus / uniform regulariser; MinMax gamma 3 with eta_w = 0.005.
ATTACK_COMMON = {"eps": EPS, "step_size": STEP_SIZE, "init": "uniform", "update_order": "thesis", "inner_steps": 10,
                 "inner_lr": 0.005, "tamoo_lambda": 100.0, "minmax_gamma": 3.0}
# Per task set: the attack options, the number of test points, outer steps L (the thesis: 100 everywhere, the
# full test set). Sized to ~20 min of attacks on 2 shared cores: MOO / TA-MOO take one backward pass per task
# (an EoT step of MOO / TA-MOO costs 7 x 7 member backward passes per point), hence fewer EoT points and steps.
TASKS = {
    "ens": {"options": {"tasks": "ens", "loss": "ce"}, "points": 100, "steps": 20},
    "uni": {"options": {"tasks": "uni", "loss": "cw", "group_size": 4, "goal": "clean"}, "points": 120, "steps": 20},
    "eot": {"options": {"tasks": "eot", "loss": "cw", "setting": "deterministic", "goal": "clean"}, "points": 40,
            "steps": 10},
}
# Extra rows: label -> (weighting, options over ATTACK_COMMON). The reference code's UNI script runs TA-MOO with
# lambda = 10 (spec B7, B11.6), against the thesis's 100 everywhere.
VARIANTS = {"uni": {"tamoo_lambda10": ("tamoo", {"tamoo_lambda": 10.0})}}
TASK_NAMES = {"ens": [m[0] for m in MEMBERS], "uni": ["x1", "x2", "x3", "x4"],
              "eot": ["I", "H", "V", "C", "G", "B", "R"]}
ATTACK_SEEDS = (0, 1, 2)
POINTS_SEED = 0  # the attacked test points: a seeded permutation of the class-sorted test split (mixed groups)

# The thesis's CIFAR-10 numbers (spec B10), printed beside ours: (A-All, A-Avg); UNI: A-Avg only.
THESIS = {
    "ens": {"source": "Table 1, set D, CE", "uniform": (28.21, 48.34), "minmax": (35.75, 51.56),
            "mgda": (25.16, 44.76), "tamoo": (38.01, 51.10)},
    "uni": {"source": "Table 5, R18, CW, K = 4 (A-Avg)", "uniform": (None, 37.52), "minmax": (None, 50.13),
            "mgda": (None, 43.80), "tamoo": (None, 48.00)},
    "eot": {"source": "Table 6, D-C10, CW", "uniform": (25.98, 55.33), "minmax": (30.54, 52.20),
            "mgda": (21.25, 49.81), "tamoo": (31.10, 55.26)},
}

# --quick: tiny members, data and attacks (a smoke run of every phase, seconds to a minute).
QUICK_MEMBERS = (
    ("cnn", {"name": "small_cnn", "channels": (4, 8), "hidden": 16, "conv_padding": 1}),
    ("lenet5", {"name": "lenet5", "conv1_padding": 0}),
    ("mlp_a", {"name": "mlp", "hidden_sizes": (16,)}),
    ("mlp_b", {"name": "mlp", "hidden_sizes": (8,)}),
)
QUICK = {"train_subset": 256, "epochs": 1, "batch_size": 64, "pgd_steps": 1, "points": 8, "eot_points": 4,
         "steps": 2, "seeds": (0, 1)}


# ---------------------------------------------------------------------------------------------------------
# Victims
# ---------------------------------------------------------------------------------------------------------

def victim_config(index: int, args) -> tuple[dict, list[str]]:
  """The `jaxrobust train` config of member ``index`` and its command-line overrides."""
  from jaxrobust.configs import validate_config
  from jaxrobust.configs.base import base_config
  label, model = args.members[index]
  tr = args.training
  cfg = base_config()
  cfg["seed"] = index
  cfg["output_dir"] = os.path.join(args.runs_dir, f"victim_{index}_{label}")
  cfg["data"].update(name=DATASET, source="auto", augment=False, train_subset=tr["train_subset"],
                     subset_seed=tr["subset_seed"])
  cfg["model"] = dict(model)
  cfg["method"] = dict(tr["method"])
  cfg["optim"].update(tr["optim"])
  cfg["train"].update(epochs=tr["epochs"], batch_size=tr["batch_size"], checkpoint_every_steps=10**9,
                      log_every_steps=10)
  validate_config(cfg)
  over = [f"seed={index}", f"data.name={DATASET}", f"data.train_subset={tr['train_subset']}",
          f"data.subset_seed={tr['subset_seed']}"]
  over += [f"model.{k}={v}".replace(" ", "") for k, v in model.items()]
  over += [f"method.{k}={v}" for k, v in tr["method"].items()]
  over += [f"optim.{k}={v}" for k, v in tr["optim"].items()]
  over += [f"train.epochs={tr['epochs']}", f"train.batch_size={tr['batch_size']}"]
  return cfg, over


def train_victims(args) -> None:
  from jaxrobust.data import load_splits
  from experiments.training import fit_run
  data = None
  for index in range(len(args.members)):
    cfg, over = victim_config(index, args)
    record_path = os.path.join(cfg["output_dir"], "train_record.json")
    if os.path.exists(record_path):
      continue
    if data is None:
      data = load_splits(cfg["data"])
    command = f"jaxrobust train --output-dir {cfg['output_dir']} " + " ".join(f"'{o}'" for o in over)
    print(f"\n=== victim {index} {args.members[index][0]}\n{command}", flush=True)
    state, seconds, log = fit_run(cfg, data)
    last = log[-1]
    record = {"label": args.members[index][0], "command": command, "train_seconds": seconds,
              "steps": int(state.step), "last_train_metrics": {k: round(float(v), 4) for k, v in last.items()
                                                                if k in ("loss", "adv_acc")}}
    with open(record_path, "w") as f:
      json.dump(record, f, indent=2)
    print(f"victim {index}: {seconds:.0f} s, {record['last_train_metrics']}", flush=True)


def load_victims(args):
  """(member runs, heterogeneous Ensemble module, its variables): the library's Ensemble of the trained members."""
  from jaxrobust.models.ensemble import Ensemble
  from jaxrobust.runs import load_run
  runs = [load_run(victim_config(i, args)[0]["output_dir"]) for i in range(len(args.members))]
  ensemble = Ensemble(members=tuple(r.module for r in runs))
  variables = {}
  for i, r in enumerate(runs):
    for collection, tree in r.variables.items():
      variables.setdefault(collection, {})[f"members_{i}"] = tree
  return runs, ensemble, variables


# ---------------------------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------------------------

def attack_points(n: int):
  """The first n of a seeded permutation of the (class-sorted) CIFAR-10 test split: every task set attacks a
  prefix of the same points, and consecutive UNI groups mix classes."""
  from jaxrobust.data import load_dataset
  test = load_dataset(DATASET, "test")
  idx = np.random.default_rng(POINTS_SEED).permutation(len(test))[:n]  # a prefix of one fixed permutation
  return jnp.asarray(test.as_float(idx)), jnp.asarray(np.asarray(test.labels)[idx], jnp.int32)


def victim_accuracies(labels, runs, ens_apply, ens_vars, x, y) -> dict:
  """Clean and PGD-10 accuracy of each member and of the ensemble (mean softmax) on the ENS points."""
  from jaxrobust.attacks.pgd import pgd
  out = {}
  key = jax.random.PRNGKey(1234)
  named = [(label, r.apply, r.variables) for label, r in zip(labels, runs)]
  named.append(("ensemble", ens_apply, ens_vars))
  for label, apply, variables in named:
    fn = jax.jit(lambda v, xx, a=apply: a(v, xx))
    x_adv = jax.jit(lambda v, xx, yy, a=apply: pgd(lambda z: a(v, z), xx, yy, key, eps=EPS, step_size=STEP_SIZE,
                                                    steps=VICTIM_PGD_STEPS))(variables, x, y)
    out[label] = {"clean_acc": float(jnp.mean(jnp.argmax(fn(variables, x), -1) == y)),
                  "pgd10_acc": float(jnp.mean(jnp.argmax(fn(variables, x_adv), -1) == y))}
  return out


def compile_attack(logits_fn, x, y, task: str, weighting: str, steps: int):
  """(compiled (x, y, key) -> achieved (rows, m), options, compile seconds): one XLA program per task and
  weighting, shared by the seeds (the key is an argument)."""
  from jaxrobust.attacks.moo import moo_attack_with_info
  options = {**ATTACK_COMMON, **TASKS[task]["options"], "weighting": weighting, "steps": steps}
  if weighting == "clean":
    options.update(weighting="uniform", steps=0, init="none")
  elif weighting in VARIANTS.get(task, {}):
    base, extra = VARIANTS[task][weighting]
    options.update(extra, weighting=base)

  def achieved_and_weights(xx, yy, k):
    info = moo_attack_with_info(logits_fn, xx, yy, k, **options)[1]
    return info.achieved, info.weights

  fn = jax.jit(achieved_and_weights)
  t0 = time.perf_counter()
  compiled = fn.lower(x, y, jax.random.PRNGKey(0)).compile()
  return compiled, options, time.perf_counter() - t0


def run_attack(compiled, options: dict, compile_s: float, x, y, seed: int, weighting: str) -> dict:
  """One attack run for one seed (the random start) and its success rates."""
  from jaxrobust.attacks.moo import success_rates
  load_before = os.getloadavg()[0]
  t0 = time.perf_counter()
  achieved, weights = jax.block_until_ready(compiled(x, y, jax.random.PRNGKey(seed)))
  run_s = time.perf_counter() - t0
  rates = success_rates(achieved)
  return {"task": options["tasks"], "weighting": weighting, "seed": seed, "points": int(x.shape[0]),
          "rows": int(achieved.shape[0]), "steps": options["steps"], "a_all": float(rates.all),
          "a_avg": float(rates.average), "a_i": [float(v) for v in rates.per_task],
          "final_weights_mean": [float(v) for v in jnp.mean(weights, axis=0)], "run_s": run_s,
          "compile_s": compile_s, "load_avg_1min": [load_before, os.getloadavg()[0]],
          "options": {k: v for k, v in options.items() if k != "steps"}}


def attack(args) -> None:
  out_json = args.out + ".json"
  doc = {"results": {}, "victims": None}
  if os.path.exists(out_json):
    with open(out_json) as f:
      doc = json.load(f)
  runs, ensemble, ens_vars = load_victims(args)
  from jaxrobust.models import make_apply, make_member_apply
  member_apply = make_member_apply(ensemble)
  ens_apply = make_apply(ensemble)
  single_apply, single_vars = runs[0].apply, runs[0].variables
  n_max = max(args.points[t] for t in args.tasks)
  x_all, y_all = attack_points(n_max)
  if args.check_ensemble:  # the Ensemble's member logits are the members' own
    z = member_apply(ens_vars, x_all[:8])
    for i, r in enumerate(runs):
      np.testing.assert_allclose(np.asarray(z[i]), np.asarray(r.apply(r.variables, x_all[:8])), rtol=1e-4, atol=1e-4)
  if doc.get("victims") is None:
    n = args.points["ens"]
    t0 = time.perf_counter()
    acc = victim_accuracies([lab for lab, _ in args.members], runs, ens_apply, ens_vars, x_all[:n], y_all[:n])
    records = []
    for i in range(len(runs)):
      with open(os.path.join(victim_config(i, args)[0]["output_dir"], "train_record.json")) as f:
        records.append(json.load(f))
    doc["victims"] = {"members": [{"label": lab, "model": model, **acc[rec["label"]],
                                   **{k: rec[k] for k in ("command", "train_seconds", "steps")}}
                                  for (lab, model), rec in zip(args.members, records)],
                      "ensemble": acc["ensemble"], "points": n, "seconds": time.perf_counter() - t0}
    print("victims:", json.dumps(doc["victims"]["ensemble"]), [(m["label"], m["clean_acc"], m["pgd10_acc"])
                                                             for m in doc["victims"]["members"]], flush=True)
    write(args, doc)
  t_start = time.perf_counter()
  for task in args.tasks:
    n = args.points[task]
    x, y = x_all[:n], y_all[:n]
    if task == "ens":
      logits_fn = lambda z: member_apply(ens_vars, z)  # noqa: E731
    else:
      logits_fn = lambda z: single_apply(single_vars, z)  # noqa: E731
    for weighting in ("clean", *args.weightings, *VARIANTS.get(task, {})):
      compiled = None
      for seed in ((args.seeds[0],) if weighting == "clean" else args.seeds):
        key = f"{task}/{weighting}/s{seed}"
        if key in doc["results"]:
          continue
        if compiled is None:
          compiled, options, compile_s = compile_attack(logits_fn, x, y, task, weighting, args.steps[task])
        row = run_attack(compiled, options, compile_s, x, y, seed, weighting)
        doc["results"][key] = row
        print(f"{key}: A-All {100 * row['a_all']:.1f} A-Avg {100 * row['a_avg']:.1f} "
              f"A-i {' '.join(f'{100 * a:.0f}' for a in row['a_i'])}  run {row['run_s']:.1f} s "
              f"(compile {row['compile_s']:.1f} s, load {row['load_avg_1min'][0]:.1f})", flush=True)
        write(args, doc, attack_s=time.perf_counter() - t_start)
  write(args, doc, attack_s=time.perf_counter() - t_start)


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

def _mean_sd(values):
  v = 100.0 * np.asarray(values, float)
  return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"))


def _fmt(values) -> str:
  m, sd = _mean_sd(values)
  return f"{m:.1f}" + ("" if np.isnan(sd) else f" ± {sd:.1f}")


def summary(results: dict) -> dict:
  """task -> weighting -> {'a_all': (mean, sd), 'a_avg': ..., 'a_i': [mean...], 'run_s': mean, 'seeds': n}."""
  out = {}
  for row in results.values():
    out.setdefault(row["task"], {}).setdefault(row["weighting"], []).append(row)
  table = {}
  for task, by_w in out.items():
    for w, rows in by_w.items():
      table.setdefault(task, {})[w] = {
          "a_all": _mean_sd([r["a_all"] for r in rows]), "a_avg": _mean_sd([r["a_avg"] for r in rows]),
          "a_i": [float(np.mean([100 * r["a_i"][i] for r in rows])) for i in range(len(rows[0]["a_i"]))],
          "w": ([float(np.mean([r["final_weights_mean"][i] for r in rows])) for i in range(len(rows[0]["a_i"]))]
                if all("final_weights_mean" in r for r in rows) else None),
          "a_all_values": [100 * r["a_all"] for r in rows], "a_avg_values": [100 * r["a_avg"] for r in rows],
          "run_s": float(np.mean([r["run_s"] for r in rows])), "seeds": len(rows),
          "points": rows[0]["points"], "rows": rows[0]["rows"], "steps": rows[0]["steps"]}
  return table


def ordering_checks(table: dict) -> list[str]:
  """The thesis's orderings (spec B10) against this run, each as one line computed from the table."""
  lines = []

  def best(task, metric):
    if task not in table:
      return None
    return max(WEIGHTINGS, key=lambda w: table[task][w][metric][0])

  def cell(task, w, metric):
    m, sd = table[task][w][metric]
    return f"{WEIGHTING_LABELS[w]} {m:.1f} ± {sd:.1f}"

  def verdict(ok):
    return "shows here" if ok else "does not show here"

  if "ens" in table and all(w in table["ens"] for w in WEIGHTINGS):
    b = best("ens", "a_all")
    lines.append(f"- ENS, thesis: TA-MOO has the best A-All. Here the best A-All is {cell('ens', b, 'a_all')} "
                 f"({cell('ens', 'tamoo', 'a_all')}): {verdict(b == 'tamoo')}.")
    below = table["ens"]["mgda"]["a_all"][0] < table["ens"]["uniform"]["a_all"][0]
    lines.append(f"- ENS, thesis (set D): MOO's A-All is below Uniform's. Here {cell('ens', 'mgda', 'a_all')} vs "
                 f"{cell('ens', 'uniform', 'a_all')}: {verdict(below)}.")
  if "uni" in table and all(w in table["uni"] for w in WEIGHTINGS):
    b = best("uni", "a_avg")
    lines.append(f"- UNI K = 4, thesis: MinMax is strongest at K = 4 (TA-MOO best only for larger K). Here the best "
                 f"A-Avg is {cell('uni', b, 'a_avg')}: {verdict(b == 'minmax')}; "
                 f"{cell('uni', 'tamoo', 'a_avg')} above Uniform and MOO: "
                 f"{verdict(all(table['uni']['tamoo']['a_avg'][0] > table['uni'][w]['a_avg'][0] for w in ('uniform', 'mgda')))}.")
  if "eot" in table and all(w in table["eot"] for w in WEIGHTINGS):
    b = best("eot", "a_all")
    t_m, t_sd = table["eot"]["tamoo"]["a_all"]
    b_m, b_sd = table["eot"][b]["a_all"]
    close = b == "tamoo" or (b_m - t_m) <= max(t_sd, b_sd, 0.0)
    lines.append(f"- EoT (deterministic), thesis: TA-MOO has about the best A-All. Here the best is "
                 f"{cell('eot', b, 'a_all')}, {cell('eot', 'tamoo', 'a_all')} "
                 f"(\"about\" = within one seed sd of the best): {verdict(close)}.")
  return lines


def write(args, doc: dict, attack_s: float = 0.0) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  doc["meta"] = {"command": "python -m experiments.ensemble.attack_comparison " + " ".join(args.argv),
                 "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU cores",
                 "load_avg_1_5_15": list(os.getloadavg()),
                 "versions": {"python": platform.python_version(), "jax": jax.__version__,
                              "backend": jax.default_backend(), **_versions()},
                 "attack_seconds_this_call": attack_s, "settings": settings_record(args)}
  with open(args.out + ".json", "w") as f:
    json.dump(doc, f, indent=2)
  with open(args.out + ".md", "w") as f:
    f.write(markdown(doc) + "\n")


def _versions() -> dict:
  out = {}
  for name in ("flax", "optax", "numpy"):
    try:
      out[name] = __import__(name).__version__
    except Exception:  # pragma: no cover
      pass
  return out


def settings_record(args) -> dict:
  return {"members": [[lab, model] for lab, model in args.members], "victim_training": args.training,
          "attack_common": ATTACK_COMMON, "tasks": {t: {**TASKS[t]["options"], "points": args.points[t],
                                                        "steps": args.steps[t]} for t in args.tasks},
          "seeds": list(args.seeds), "points_seed": POINTS_SEED}


def markdown(doc: dict) -> str:
  meta, victims = doc["meta"], doc.get("victims")
  s = meta["settings"]
  table = summary(doc["results"])
  tr = s["victim_training"]
  lines = ["# TA-MOO attack comparison, reduced CPU protocol (CIFAR-10)", "", "```", meta["command"], "```", "",
           f"- written {meta['date']} on {meta['machine']}; load average (1, 5, 15 min) at writing "
           f"{', '.join(f'{v:.2f}' for v in meta['load_avg_1_5_15'])}; " +
           ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
           f"- victims: {', '.join(f'{lab} ({m})' for lab, m in s['members'])}; each PGD-AT "
           f"(eps 8/255, step 2/255, {tr['method']['steps']} steps) for {tr['epochs']} epochs on "
           f"{tr['train_subset']} training images, {tr['optim']['name']} lr {tr['optim']['lr']} "
           f"{tr['optim']['schedule']}, batch {tr['batch_size']}; member 0 is the UNI / EoT victim",
           f"- attacks: eps 8/255, step 2/255, delta_0 ~ U(-eps, eps), thesis update order; MOO / TA-MOO K = "
           f"{s['attack_common']['inner_steps']} inner steps, eta_w {s['attack_common']['inner_lr']}, "
           f"lambda {s['attack_common']['tamoo_lambda']}; MinMax gamma {s['attack_common']['minmax_gamma']}; "
           f"attack seeds {', '.join(map(str, s['seeds']))} (the random start); the thesis uses L = 100 steps "
           "and the full test set",
           "- values: attack success rates in %, mean ± sample sd over seeds; s/run: mean wall seconds of one "
           "attack run (compile excluded) on the shared, loaded 2-core machine",
           "- \"no attack\": the goals already reached at x itself (ENS: the members' clean errors; UNI / EoT, goal "
           "= the clean prediction: 0 for UNI, the transformations that alone change the prediction for EoT)",
           "- final w: the task weights of the last step, averaged over points (groups) and seeds (the thesis's "
           "\"MOO final w\", Table 2)", ""]
  if victims:
    lines += [f"Victims on the {victims['points']} ENS points (clean / PGD-{VICTIM_PGD_STEPS} accuracy, %): " +
              "; ".join(f"{m['label']} {100 * m['clean_acc']:.1f} / {100 * m['pgd10_acc']:.1f} "
                        f"(trained {m['train_seconds']:.0f} s)" for m in victims["members"]) +
              f"; ensemble (mean softmax) {100 * victims['ensemble']['clean_acc']:.1f} / "
              f"{100 * victims['ensemble']['pgd10_acc']:.1f}.", ""]
  for task, title in (("ens", "ENS (4 members, CE)"), ("uni", "UNI (K = 4, CW, goal: clean prediction)"),
                      ("eot", "EoT (7 transformations, deterministic, CW, goal: clean prediction)")):
    if task not in table:
      continue
    any_row = next(iter(table[task].values()))
    names = TASK_NAMES[task] if len(TASK_NAMES[task]) == len(any_row["a_i"]) else \
        [f"T{i + 1}" for i in range(len(any_row["a_i"]))]
    if task == "ens":
      names = [lab for lab, _ in s["members"]]
    unit = "groups" if task == "uni" else "points"
    lines += [f"## {title}", "",
              f"{any_row['rows']} {unit} ({any_row['points']} test images), L = {any_row['steps']} steps; "
              f"thesis ({THESIS[task]['source']}) in the last column as A-All / A-Avg.", "",
              "| method | seeds | A-All | A-Avg | " + " | ".join(f"A-{n}" for n in names) +
              " | s/run | final w (mean) | thesis |",
              "|---|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    for w in ("clean", *WEIGHTINGS, *VARIANTS.get(task, {})):
      if w not in table[task]:
        continue
      r = table[task][w]
      th = THESIS[task].get(w, (None, None))
      thesis = " / ".join("-" if v is None else f"{v:.2f}" for v in th)
      ms = lambda v: f"{v[0]:.1f}" + ("" if np.isnan(v[1]) else f" ± {v[1]:.1f}")  # noqa: E731
      lines.append(f"| {WEIGHTING_LABELS[w]} | {r['seeds']} | {ms(r['a_all'])} | {ms(r['a_avg'])} | " +
                   " | ".join(f"{v:.1f}" for v in r["a_i"]) +
                   f" | {r['run_s']:.1f} | {'/'.join(f'{v:.2f}' for v in r['w']) if r['w'] and w != 'clean' else '-'}"
                   f" | {thesis} |")
    lines.append("")
  checks = ordering_checks(table)
  if checks:
    lines += ["## The thesis's orderings here (computed from the table)", "", *checks, ""]
  lines.append("Per-seed values are in the JSON (`results`).")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--phase", choices=("all", "train", "attack", "report"), default="all")
  p.add_argument("--quick", action="store_true", help="tiny members, data and attacks (smoke run)")
  p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
  p.add_argument("--weightings", nargs="*", default=list(WEIGHTINGS), choices=list(WEIGHTINGS))
  p.add_argument("--seeds", nargs="*", type=int, default=None)
  p.add_argument("--points", type=int, default=None, help="test points of every task set (default: per task)")
  p.add_argument("--steps", type=int, default=None, help="outer steps L of every task set (default: per task)")
  p.add_argument("--runs-dir", default=None, help="victim run directories (default runs/ensemble_attack_comparison)")
  p.add_argument("--out", default=None, help="output path without extension (default results/attack_comparison)")
  args = p.parse_args(argv)
  args.argv = argv
  tmp = tempfile.mkdtemp(prefix="attack_comparison_quick_") if args.quick else None
  args.members = QUICK_MEMBERS if args.quick else MEMBERS
  args.training = dict(VICTIM_TRAINING)
  if args.quick:
    args.training.update(train_subset=QUICK["train_subset"], epochs=QUICK["epochs"], batch_size=QUICK["batch_size"],
                         method={**VICTIM_TRAINING["method"], "steps": QUICK["pgd_steps"]})
  args.runs_dir = args.runs_dir or (os.path.join(tmp, "runs") if args.quick
                                    else os.path.join("runs", "ensemble_attack_comparison"))
  args.out = args.out or (os.path.join(tmp, "attack_comparison") if args.quick
                          else os.path.join(RESULTS, "attack_comparison"))
  args.seeds = tuple(args.seeds) if args.seeds else (QUICK["seeds"] if args.quick else ATTACK_SEEDS)
  args.points = {t: args.points or (QUICK["eot_points" if t == "eot" else "points"] if args.quick else TASKS[t]["points"])
                 for t in TASKS}
  args.steps = {t: args.steps or (QUICK["steps"] if args.quick else TASKS[t]["steps"]) for t in TASKS}
  args.check_ensemble = True
  if args.phase in ("all", "train"):
    train_victims(args)
  if args.phase in ("all", "attack"):
    attack(args)
  if args.phase == "report":
    with open(args.out + ".json") as f:
      doc = json.load(f)
    with open(args.out + ".md", "w") as f:
      f.write(markdown(doc) + "\n")
  if args.quick:
    print(f"quick run written to {args.out}.{{json,md}}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
