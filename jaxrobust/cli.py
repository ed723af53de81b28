"""The ``jaxrobust`` command line: thin parsing over the library.

    jaxrobust quickstart                      # standard vs PGD-AT on the shipped digits
    jaxrobust train --config NAME_OR_FILE.py [key=value ...]
    jaxrobust evaluate --run-dir DIR [--attack SPEC ...] [--rdiv] [key=value ...]
    jaxrobust evaluate --run-dir DIR --protocol NAME  # a paper's evaluation, beside its table
    jaxrobust attack --run-dir DIR --attack SPEC --out adv.npz
    jaxrobust list [--keys | --attack NAME | --protocols]   # what exists, config keys, attack options
    jaxrobust export-summary RUN_DIR [--out FILE]  # RobustBench-style summary of the newest AutoAttack record
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys


def _split_options(text: str) -> list[str]:
  """Splits at the commas outside brackets: 'a=1,b=[1,2]' -> ['a=1', 'b=[1,2]']."""
  items, depth, start = [], 0, 0
  for i, ch in enumerate(text):
    if ch in "[({":
      depth += 1
    elif ch in "])}":
      depth -= 1
    elif ch == "," and depth == 0:
      items.append(text[start:i])
      start = i + 1
  items.append(text[start:])
  return items


def _positive_int(text: str) -> int:
  """argparse type of a count: an integer >= 1 (0 would silently mean every point)."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1 (omit it to use every point); got {value}")
  return value


def _parse_attack_spec(text: str) -> dict:
  """'pgd:eps=0.3,steps=20,step_size=0.01' -> {'name': 'pgd', 'eps': 0.3, ...}; a list value keeps its
  commas: 'fmn:norm=l2,eps_curve=[0.5,1.0]' -> {..., 'eps_curve': [0.5, 1.0]}."""
  name, _, rest = text.partition(":")
  spec = {"name": name.strip()}
  if rest.strip():
    for item in _split_options(rest):
      if "=" not in item:
        raise SystemExit(f"error: attack option {item!r} in {text!r} must look like key=value")
      k, v = item.split("=", 1)
      try:
        spec[k.strip()] = ast.literal_eval(v.strip())
      except (ValueError, SyntaxError):
        spec[k.strip()] = v.strip()
  return spec


def _load_run(args, best: bool = False):
  """``jaxrobust.runs.load_run`` for a command (or ``load_torch_run`` for --torch-checkpoint / --robustbench);
  a folder that is not a usable run exits with its reason."""
  from jaxrobust.runs import load_ensemble, load_run, load_torch_run
  from jaxrobust.train.checkpoint import CheckpointError
  if _torch_source(args):
    try:
      return load_torch_run(args.torch_checkpoint, args.arch, robustbench=args.robustbench, model_dir=args.model_dir,
                            dataset=args.dataset, threat_model=args.threat_model, overrides=args.overrides)
    except (FileNotFoundError, ImportError, ValueError) as e:
      raise SystemExit(f"error: {e}")
  run_dirs = _run_dirs(args)
  try:
    if getattr(args, "model", None):
      from jaxrobust.runs import load_model
      if run_dirs:
        raise ValueError("give either --run-dir (a trained run) or --model (a model of your own), not both")
      return load_model(args.model, args.config or "quickstart_digits", params=args.params, overrides=args.overrides)
    if getattr(args, "params", None) or getattr(args, "config", None):
      raise ValueError("--params and --config go with --model (a model of your own); a run directory has both")
    if not run_dirs:
      raise ValueError("give --run-dir (a trained run) or --model package.module:function (a model of your own)")
    if len(run_dirs) > 1:
      return load_ensemble(run_dirs, best=best, overrides=args.overrides)
    return load_run(run_dirs[0], best=best, overrides=args.overrides)
  except (FileNotFoundError, CheckpointError, ValueError) as e:
    raise SystemExit(f"error: {e}")


def _torch_source(args) -> str | None:
  """The PyTorch / RobustBench model a command evaluates instead of a run (None: a run), after checking that
  exactly one source is given."""
  source = getattr(args, "torch_checkpoint", None) or getattr(args, "robustbench", None)
  if source and (args.run_dir or getattr(args, "model", None)):
    raise SystemExit("error: give one model source: --run-dir, --model, or --torch-checkpoint / --robustbench")
  if getattr(args, "torch_checkpoint", None) and getattr(args, "robustbench", None):
    raise SystemExit("error: give either --torch-checkpoint FILE --arch NAME or --robustbench NAME --model-dir DIR")
  if not source and not args.run_dir and not getattr(args, "model", None):
    raise SystemExit("error: evaluate needs --run-dir, --model PACKAGE.MODULE:FUNCTION, --torch-checkpoint FILE "
                     "--arch NAME, or --robustbench NAME --model-dir DIR")
  return source


def _run_dirs(args) -> list:
  if args.run_dir is None:
    return []
  return list(args.run_dir) if isinstance(args.run_dir, (list, tuple)) else [args.run_dir]


def _default_output(args, name: str) -> str:
  """<run-dir>/name, for an ensemble of runs <first run-dir>/ensemble_of_N_name, for --model
  runs/models/<package.module.function>/name; for a PyTorch / RobustBench model, <checkpoint stem>_name in the
  current folder."""
  if getattr(args, "model", None):
    return os.path.join("runs", "models", args.model.replace(":", "."), name)
  source = _torch_source(args)
  if source:
    return f"{os.path.splitext(os.path.basename(source))[0]}_{name}"
  run_dirs = _run_dirs(args)
  return os.path.join(run_dirs[0], name if len(run_dirs) == 1 else f"ensemble_of_{len(run_dirs)}_{name}")


def _test_split(cfg):
  from jaxrobust.data import load_splits
  return load_splits(cfg["data"]).test


def _add_distributed_flags(p: argparse.ArgumentParser) -> None:
  """The multi-host flags shared by `train` and `evaluate` (jax.distributed)."""
  p.add_argument("--coordinator", help="multi-host: coordinator address host:port (jax.distributed)")
  p.add_argument("--num-processes", type=int, help="multi-host: total number of processes")
  p.add_argument("--process-id", type=int, help="multi-host: this process's index")
  p.add_argument("--distributed-auto", action="store_true",
                 help="multi-host: let jax.distributed detect the cluster (TPU pods, SLURM, Open MPI)")


def _init_distributed(args) -> None:
  """jax.distributed.initialize for --coordinator / --distributed-auto; must run before any other JAX call."""
  if args.coordinator or args.distributed_auto:
    from jaxrobust import parallel
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                                    auto=args.distributed_auto)
  elif args.num_processes is not None or args.process_id is not None:
    raise SystemExit("error: --num-processes / --process-id need --coordinator HOST:PORT (the address of process "
                     "0), or --distributed-auto on a cluster JAX detects (TPU pod, SLURM, Open MPI)")


def cmd_train(args) -> int:
  _init_distributed(args)
  from jaxrobust.configs import load_config
  from jaxrobust.evaluate.robust import format_table
  from jaxrobust.train.loop import train_and_evaluate
  if args.model:  # first, so that model.KEY=VALUE overrides of the factory's arguments apply to it
    args.overrides = [f"model.name={args.model}", *args.overrides]
  if args.method:
    from jaxrobust.configs import apply_overrides, validate_config
    from jaxrobust.methods.registry import switch_method
    cfg = load_config(args.config)
    cfg["method"], dropped = switch_method(cfg["method"], args.method)
    if dropped:
      print(f"--method {cfg['method']['name']}: kept {sorted(k for k in cfg['method'] if k != 'name')} of "
            f"{args.config}'s method section, dropped {dropped}; the method's other hyper-parameters are its "
            "defaults (set them with method.KEY=VALUE)")
    cfg = apply_overrides(cfg, args.overrides)
    validate_config(cfg)
  else:
    cfg = load_config(args.config, args.overrides)
  if args.output_dir:
    cfg["output_dir"] = args.output_dir
  transfer_source = None
  if cfg["eval"].get("transfer_from"):  # loaded before training: a missing surrogate fails now
    source = _load_run(argparse.Namespace(run_dir=cfg["eval"]["transfer_from"], overrides=()))
    transfer_source = (source.apply, source.variables)
  report = train_and_evaluate(cfg, progress=not args.no_progress, resume=not args.no_resume,
                              transfer_source=transfer_source, overwrite=args.overwrite)
  print(format_table({cfg["method"]["name"]: report["evaluation"]}))
  ap = report["evaluation"].get("average_precision")
  if ap:
    robust = "  ".join(f"{k} {v:.4f}" for k, v in ap["robust_ap"].items())
    print(f"average precision: clean {ap['clean_ap']:.4f}  robust: {robust}  (inverted-ranking floor "
          f"{ap['inverted_floor_ap']:.4f})")
  print(f"report: {os.path.join(cfg['output_dir'], 'report.json')}")
  return 0


def cmd_evaluate(args) -> int:
  if args.protocol and _torch_source(args):
    raise SystemExit("error: --protocol evaluates a run folder (--run-dir); for a PyTorch / RobustBench model give "
                     "the protocol's attacks with --attack")
  _init_distributed(args)
  if args.protocol:
    return _evaluate_protocol(args)
  if args.source_run:
    raise SystemExit("error: --source-run is the surrogate of a protocol's transfer column; use it with --protocol")
  import jax
  from jaxrobust import parallel
  from jaxrobust.evaluate.robust import RobustEvaluator, format_table
  run = _load_run(args, best=args.best)
  cfg = run.config
  attacks = [_parse_attack_spec(a) for a in args.attack] if args.attack else cfg["eval"]["attacks"]
  if not attacks:
    print("note: no attacks given (use --attack pgd:eps=...,steps=20); reporting clean accuracy only")
  out = args.json or _default_output(args, "evaluation.json")
  _check_output_writable(out)
  if args.resume:
    attacks = [_resumable(a, os.path.splitext(out)[0] + "_autoattack_state") for a in attacks]
  metrics = None
  if args.rdiv:
    if not attacks:
      raise SystemExit("error: --rdiv compares clean and adversarial latents: give an attack, e.g. "
                       "--attack pgd:eps=0.031,step_size=0.0078,steps=250 (the paper's PGD-250)")
    from jaxrobust.models.external import has_features
    if not has_features(run.module):
      raise SystemExit("error: --rdiv compares latent features, and this model returns none: give its __call__ (or "
                       "apply) a return_features keyword returning (logits, features) (jaxrobust.models.external)")
    from jaxrobust.evaluate.latent_divergence import LatentDivergence
    from jaxrobust.evaluate.robust import DEFAULT_METRICS
    metrics = [*DEFAULT_METRICS, LatentDivergence(pools=args.rdiv_pools, plot=os.path.splitext(out)[0] + "_rdiv.png")]
  evaluator = RobustEvaluator.for_module(run.module, mesh=parallel.make_mesh(cfg["train"].get("num_devices")),
                                         features=bool(args.rdiv))
  test = _test_split(cfg)
  report = evaluator.evaluate(run.variables, test, attacks,
                              batch_size=int(cfg["eval"]["batch_size"]), max_examples=args.max_examples,
                              progress=not args.no_progress, key=jax.random.PRNGKey(args.seed),
                              checks=not args.no_checks, metrics=metrics)
  report["provenance"] = _provenance(args, run, test, report["n"], attacks)
  print(format_table({os.path.basename(_torch_source(args) or "") or cfg["method"]["name"]: report}))
  if report.get("ensemble"):
    print(_ensemble_table(report["ensemble"]))
  for label, rate in report.get("targeted_success", {}).items():
    print(f"targeted success [{label}]: {100 * rate:.2f}% of the {report['n_targeted'][label]} clean-correct "
          "points predicted as their target (robust accuracy above: still predicted as the true label)")
  for label, r in report.get("r_div", {}).items():
    print(f"R-DIV [{label}, {r['pools']} pools]: {r['ratio']:.4f} = d+ {r['d_plus']:.4f} / d- {r['d_minus']:.4f} "
          f"on {r['n']} points; plot: {r['plot']}")
  if report.get("eps_curve"):
    from jaxrobust.evaluate.min_norm_curve import plot_min_norm_curve
    plot = plot_min_norm_curve(report["eps_curve"], os.path.splitext(out)[0] + "_eps_curve.png")
    for label, c in report["eps_curve"].items():
      c["plot"] = plot
      accs = ", ".join(f"{e:g}: {100 * a:.2f}%" for e, a in zip(c["eps"], c["robust_acc"]))
      print(f"robust accuracy against eps [{label}, {c['norm']}, one run]: {accs}; median norm "
            f"{c['median_norm']:.4g}; plot: {plot}")
  if parallel.is_main_process():  # every process holds the same global report
    _write_record(out, report)
    if cfg["train"].get("tensorboard", False) in (True, "true"):  # beside the run's curves, at the checkpoint's step
      from jaxrobust.event_file import EventFileWriter
      from jaxrobust.evaluate.records import eval_scalars
      events = EventFileWriter(os.path.join(_run_dirs(args)[0], "tensorboard"))
      events.scalars({f"evaluate/{k}": v for k, v in eval_scalars(report).items()}, int(run.step))
      events.close()
  return 0


def _provenance(args, run, test, n: int, attacks) -> dict:
  """``evaluate.records.provenance`` of a command's evaluation of ``run`` (seed, versions, commit, points)."""
  from jaxrobust.evaluate.records import provenance
  sources = {k: getattr(args, k, None) for k in ("model", "params", "torch_checkpoint", "arch", "robustbench",
                                                  "model_dir", "threat_model")}
  return provenance(seed=args.seed, dataset=test, n=n, attacks=attacks,
                    run_dirs=[os.path.abspath(d) for d in _run_dirs(args)], checkpoint_step=int(run.step),
                    best=bool(args.best), overrides=list(args.overrides),
                    model_source={k: v for k, v in sources.items() if v is not None})


def _write_record(out: str, record: dict) -> None:
  """The latest record at ``out``, and appended to evaluations.jsonl beside it (never overwritten)."""
  from jaxrobust.evaluate.records import HISTORY, write_record
  ids = write_record(out, record)
  print(f"json: {out} (record {ids['record_id']}, appended to {os.path.join(os.path.dirname(out) or '.', HISTORY)})")


def _resumable(spec: dict, state_dir: str) -> dict:
  """An AutoAttack spec with its per-batch state kept in ``state_dir``; other attacks unchanged."""
  return dict(spec, state_dir=state_dir) if spec["name"] == "autoattack" else spec


def _check_output_writable(path: str) -> None:
  """Before the work: the folder of an output file exists (or can be made) and is writable."""
  from jaxrobust.train.checkpoint import ensure_writable_dir
  ensure_writable_dir(os.path.dirname(os.path.abspath(path)), f"the folder of the output {path!r}")


def _ensemble_table(e: dict) -> str:
  """Per-member accuracy and the attacks' success on the members (A-i, A-Avg, A-All), in %."""
  m = len(e["member_clean_acc"])
  lines = ["| ensemble members | " + " | ".join(f"member {i} acc" for i in range(m)) + " | A-Avg | A-All |",
           "|---|" + "---:|" * (m + 2),
           "| clean | " + " | ".join(f"{a:.2f}" for a in e["member_clean_acc"]) + " | | |"]
  for label, accs in e["member_robust_acc"].items():
    s = e["attack_success"][label]
    lines.append(f"| {label} | " + " | ".join(f"{a:.2f}" for a in accs) + f" | {s['A_avg']:.2f} | {s['A_all']:.2f} |")
  t = e.get("transferability")
  if t is not None:
    lines.append(f"transferability (Bui et al. 2021, Table 6) over {t['attacks']}: T {t['T']:.2f}, a(en,en) "
                 f"{t['a_en_en']:.2f}, nT {t['nT']:.2f}, a_single {t['a_single']:.2f}"
                 + (f", S11 {t['S11']:.2f} S10 {t['S10']:.2f} S01 {t['S01']:.2f} S00 {t['S00']:.2f}"
                    if "S11" in t else ""))
  return "\n".join(lines)


def _evaluate_protocol(args) -> int:
  """``jaxrobust evaluate --protocol NAME``: the paper's attack list and budgets, beside its numbers."""
  from jaxrobust import parallel
  from jaxrobust.runs import evaluate_protocol, protocol_table
  from jaxrobust.train.checkpoint import CheckpointError
  if args.attack or args.rdiv:
    raise SystemExit("error: --protocol fixes the attacks (and R-DIV where the paper reports it); drop --attack / --rdiv")
  if args.model:
    raise SystemExit("error: --protocol evaluates a run directory; train your model first "
                     "(jaxrobust train --model ...) or give --attack specs")
  run = _load_run(args, best=args.best)  # the reason a folder is not a run, before any work
  run_dirs = _run_dirs(args)
  try:
    result = evaluate_protocol(run_dirs[0] if len(run_dirs) == 1 else run_dirs, args.protocol, best=args.best,
                               max_examples=args.max_examples,
                               seed=args.seed, progress=not args.no_progress, source_run=args.source_run,
                               overrides=args.overrides,
                               mesh=parallel.make_mesh(run.config["train"].get("num_devices")))
  except (FileNotFoundError, CheckpointError) as e:
    raise SystemExit(f"error: {e}")
  table = protocol_table(result)
  print(table)
  out = args.json or _default_output(args, f"evaluation_{result['protocol']}.json")
  if parallel.is_main_process():  # every process holds the same global result
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
      f.write(table + "\n")
    _write_record(out, result)
  return 0


def cmd_attack(args) -> int:
  import jax
  import numpy as np
  from jaxrobust import parallel
  from jaxrobust.evaluate.robust import RobustEvaluator
  run = _load_run(args)
  cfg = run.config
  out = args.out if args.out.endswith(".npz") else args.out + ".npz"  # what np.savez_compressed writes
  _check_output_writable(out)
  spec = _parse_attack_spec(args.attack)
  spec["label"] = spec.get("label", spec["name"])
  evaluator = RobustEvaluator.for_module(run.module, mesh=parallel.make_mesh(cfg["train"].get("num_devices")))
  report = evaluator.evaluate(run.variables, _test_split(cfg), [spec],
                              batch_size=int(cfg["eval"]["batch_size"]), max_examples=args.max_examples,
                              progress=not args.no_progress, key=jax.random.PRNGKey(args.seed),
                              keep_adversarials=True)
  label = spec["label"]
  np.savez_compressed(out, x_adv=report["adversarials"][label], robust=report["robust_flags"][label],
                      clean_correct=report["clean_flags"])
  print(f"{label}: clean {100 * report['clean_acc']:.2f}%  robust {100 * report['robust_acc'][label]:.2f}% "
        f"on {report['n']} points; adversarial examples -> {out}")
  return 0


def cmd_quickstart(args) -> int:
  from jaxrobust.quickstart import run_quickstart
  report = run_quickstart(args.output_dir, progress=not args.no_progress, epochs=args.epochs,
                          resume=not args.no_resume)
  print()
  print(report["table"])
  print(f"\ntotal {report['total_seconds']:.1f} s on {report['devices']} {report['backend']} device(s)")
  print(f"report: {os.path.join(args.output_dir, 'quickstart_report.json')}")
  print(f"plot:   {report['plot']}" if report["plot"] else report["plot_note"])
  return 0


def cmd_export_summary(args) -> int:
  """``jaxrobust export-summary RUN_DIR``: the run's newest AutoAttack record as RobustBench model-info JSON."""
  from jaxrobust.evaluate.records import read_records, robustbench_summary
  config_path = os.path.join(args.run_dir, "config.json")
  if not os.path.exists(config_path):
    raise SystemExit(f"error: {args.run_dir!r} is not a jaxrobust run directory (no config.json)")
  with open(config_path) as f:
    config = json.load(f)
  summary = robustbench_summary(read_records(args.run_dir), config, name=args.name)
  text = json.dumps(summary, indent=2)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
    print(f"summary: {args.out}")
  else:
    print(text)
  return 0


def cmd_list(args) -> int:
  from jaxrobust.attacks.registry import attack_names
  from jaxrobust.configs import KEYS, config_names
  from jaxrobust.methods.registry import method_names
  from jaxrobust.models import MODEL_NAMES
  from jaxrobust.data import DATASET_NAMES
  if args.attack:
    return _describe_attack(args.attack)
  if args.protocols:
    from jaxrobust.configs.protocols import get_protocol, protocol_names
    for name in protocol_names():
      spec = get_protocol(name)
      print(f"{name}: {spec.paper}")
      print(f"    data {spec.dataset}; columns {', '.join(spec.columns)}"
            + (f"; left empty: {', '.join(spec.missing)}" if spec.missing else ""))
      if spec.notes:
        print(f"    note: {spec.notes}")
    print("  run one: jaxrobust evaluate --run-dir DIR --protocol NAME [--max-examples N]")
    return 0
  if args.keys:
    width = max(map(len, KEYS))
    for key, meaning in KEYS.items():
      print(f"{key:<{width}}  {meaning}")
    return 0
  print("configs: ", ", ".join(config_names()))
  print("methods: ", ", ".join(method_names()))
  print("attacks: ", ", ".join(attack_names()))
  print("models:  ", ", ".join(MODEL_NAMES), "(or your own JAX model: --model package.module:function)")
  print("datasets:", ", ".join(DATASET_NAMES))
  from jaxrobust.configs.protocols import protocol_names
  print("protocols:", ", ".join(protocol_names()), "(jaxrobust list --protocols)")
  return 0


def _describe_attack(name: str) -> int:
  """``jaxrobust list --attack NAME``: what the attack is and every option with its default."""
  import inspect
  import textwrap
  from jaxrobust.attacks.registry import attack_info, attack_option_docs, attack_parameters
  info = attack_info(name)
  print(f"{info.name}: {info.summary}")
  print(f"  norms: {', '.join(info.norms)}; {info.box}-box; "
        f"{'one compiled program' if info.jittable else 'host-side cascade of compiled stages'}")
  print("  options (NAME=DEFAULT; required ones have none), each with its meaning:")
  meanings = attack_option_docs(name)
  for k, q in attack_parameters(name).items():
    print(f"    {k}" + ("" if q.default is inspect.Parameter.empty else f"={q.default!r}"))
    print(textwrap.fill(meanings[k], width=110, initial_indent=" " * 8, subsequent_indent=" " * 8))
  if info.model_output == "logits":
    print(f"  e.g. jaxrobust evaluate --run-dir DIR --attack {info.name}:eps=0.03")
  else:  # this attack reads every member's logits: an ensemble run (model.members=M), or from Python
    print(f"  model: an ensemble (train with model.members=M); its logits_fn(x) returns {info.model_output} "
          f"(members, batch, classes)")
    print(f"  e.g. jaxrobust evaluate --run-dir ENSEMBLE_RUN --attack {info.name}:eps=0.03; from Python: "
          f"get_attack({info.name!r}, eps=0.03)(member_logits_fn, x, y, key)")
  documented = info.forwards_to[0] if info.forwards_to else inspect.unwrap(info.factory)
  print(f"  the attack's documentation: python -c \"import {documented.__module__} as m; help(m.{documented.__qualname__})\"")
  return 0


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="jaxrobust", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="command", required=True)
  cache = argparse.ArgumentParser(add_help=False)  # the commands that compile
  cache.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache (default: on, in $JAXROBUST_COMPILE_CACHE "
                          "or ~/.cache/jaxrobust/xla; JAXROBUST_COMPILE_CACHE=off also turns it off)")

  t = sub.add_parser("train", parents=[cache], help="train a model with a named config, then evaluate it",
                     description="Train with a built-in config (see `jaxrobust list`) or your own config file; "
                                 "overrides are key.sub=value, e.g. method.eps=0.1 train.epochs=5 "
                                 "data.train_subset=2000 (`jaxrobust list --keys` shows every key). "
                                 "Resumes from the newest checkpoint in <output_dir>/checkpoints.")
  t.add_argument("--config", required=True,
                 help="a built-in config name (a module of jaxrobust/configs, see `jaxrobust list`) or the path "
                      "of your own .py file defining get_config() -> dict (start from "
                      "jaxrobust.configs.base.base_config() or a built-in config's get_config())")
  t.add_argument("--method", help="training method (see `jaxrobust list`); keeps the config's eps/step_size/steps, "
                                  "other method hyper-parameters at their defaults unless overridden")
  t.add_argument("--model", metavar="PACKAGE.MODULE:FUNCTION",
                 help="train your own JAX model: a function returning a flax linen or NNX module, or (apply, params) "
                      "(jaxrobust.models.external); it may take num_classes / input_shape / seed, filled from the "
                      "config's data section and seed, and model.KEY=VALUE overrides")
  t.add_argument("--output-dir", help="run directory (checkpoints, metrics.jsonl, report.json)")
  t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints (fails if any exist)")
  t.add_argument("--overwrite", action="store_true",
                 help="the output directory holds another run (a different config.json): delete that run's files "
                      "(config.json, metrics.jsonl, checkpoints/, ...) and start this one; without it such a folder "
                      "is refused")
  t.add_argument("--no-progress", action="store_true", help="no progress bars")
  _add_distributed_flags(t)
  t.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
  t.set_defaults(fn=cmd_train)

  e = sub.add_parser("evaluate", parents=[cache], help="clean and robust accuracy of a trained run",
                     description="Evaluate the final checkpoint of a run directory. --attack takes "
                                 "NAME:key=value,... (e.g. pgd:eps=0.031,steps=20,step_size=0.003); "
                                 "repeat it for several attacks; without it the run config's eval.attacks are used. "
                                 "A minimum-norm attack without eps and with eps_curve (e.g. "
                                 "'fmn:norm=l2,eps_curve=[0.5,1.0,2.0]') also reports robust accuracy at every "
                                 "radius of the list from that one run, and plots it next to the JSON "
                                 "(<json>_eps_curve.png).")
  e.add_argument("--model", metavar="PACKAGE.MODULE:FUNCTION",
                 help="evaluate your own JAX model instead of a run: a function returning a flax linen or NNX module, "
                      "or (apply, params) (jaxrobust.models.external), with its own weights or --params")
  e.add_argument("--config", help="with --model: the config (name or .py file) whose data and eval sections apply "
                                  "(default quickstart_digits)")
  e.add_argument("--params", metavar="FILE", help="with --model: the variables, as written by "
                                                  "flax.serialization.to_bytes(variables)")
  e.add_argument("--run-dir", action="append",
                 help="the --output-dir of a `jaxrobust train` run; repeated (--run-dir A --run-dir B) evaluates those runs as one "
                      "ensemble (the mean of their probabilities; per-member accuracy, A-i / A-Avg / A-All, and "
                      "attacks on the members such as moo_ens)")
  e.add_argument("--torch-checkpoint", metavar="FILE",
                 help="evaluate a PyTorch state_dict file (.pt) instead of a run, converted to the Flax model of --arch "
                      "(needs torch: the [torch] extra)")
  e.add_argument("--arch", help="the architecture of --torch-checkpoint (jaxrobust.models.TORCH_ARCHS), e.g. preact_resnet18, "
                      "resnet50, wrn28_10, wrn34_10, dm_wrn70_16 (DeepMind's Swish WideResNet), small_cnn")
  e.add_argument("--dataset", default="cifar10", help="test set for --torch-checkpoint / --robustbench (default cifar10)")
  e.add_argument("--robustbench", metavar="NAME",
                 help="evaluate a RobustBench model (e.g. Carmon2019Unlabeled, Gowal2020Uncovering_70_16) whose "
                      "checkpoint is already in --model-dir (RobustBench's layout DIR/<dataset>/<threat model>/NAME.pt)")
  e.add_argument("--model-dir", help="RobustBench's model_dir (robustbench.utils.load_model(model_dir=...))")
  e.add_argument("--threat-model", default="Linf", choices=("Linf", "L2"), help="RobustBench threat model (default Linf)")
  e.add_argument("--attack", action="append", help="attack spec NAME:key=value,... (repeatable)")
  e.add_argument("--max-examples", type=_positive_int, default=None, help="evaluate only the first N test points")
  e.add_argument("--best", action="store_true",
                 help="evaluate the checkpoint kept by train.select_best instead of the last one")
  e.add_argument("--seed", type=int, default=0, help="PRNG seed for random starts")
  e.add_argument("--json", help="where to write the JSON report (default <run-dir>/evaluation.json)")
  e.add_argument("--no-checks", action="store_true",
                 help="skip the gradient-masking checks (zero gradients, randomised outputs, probabilities "
                      "instead of logits, black-box stronger than white-box)")
  e.add_argument("--rdiv", action="store_true",
                 help="also report R-DIV (Bui et al. 2021a), the latent-divergence ratio d+ / d- of cosine distances "
                      "between penultimate features of clean and attacked test points, for every attack of the "
                      "evaluation (same adversarial examples); adds 'r_div' to the JSON and writes a per-class "
                      "bar chart + PCA plot next to it (<json>_rdiv[_LABEL].png)")
  e.add_argument("--rdiv-pools", choices=("mixed", "adversarial"), default="mixed",
                 help="R-DIV pools of a clean anchor: 'mixed' = other points' clean and adversarial latents, as the "
                      "paper writes it (default); 'adversarial' = their adversarial latents only")
  e.add_argument("--protocol", metavar="NAME",
                 help="run a paper's evaluation protocol (its attacks, budgets and sample counts) and print the "
                      "result beside the paper's table; jaxrobust list --protocols names them. Writes "
                      "<run-dir>/evaluation_NAME.json and .md; --max-examples caps every attack for a reduced run")
  e.add_argument("--source-run", metavar="DIR",
                 help="with --protocol: the CE-trained surrogate run for the protocol's transfer column (AdAP)")
  e.add_argument("--resume", action="store_true",
                 help="AutoAttack specs keep their state after every stage in <json>_autoattack_state/ (one file per "
                      "evaluation batch) and continue from it; a state made for other eps, norm, version, images, "
                      "labels or model is refused, naming what differs")
  e.add_argument("--no-progress", action="store_true")
  _add_distributed_flags(e)
  e.add_argument("overrides", nargs="*", help="key.sub=value overrides (e.g. data.test_subset=1000)")
  e.set_defaults(fn=cmd_evaluate)

  a = sub.add_parser("attack", parents=[cache], help="craft adversarial examples for a run's test set and save them",
                     description="Run one attack on a run's test split and save x_adv and robust flags to .npz.")
  a.add_argument("--run-dir", required=True, action="append",
                 help="a run folder; repeated: several runs as one ensemble")
  a.add_argument("--attack", required=True, help="attack spec NAME:key=value,...")
  a.add_argument("--out", required=True, help="output .npz path")
  a.add_argument("--max-examples", type=_positive_int, default=None)
  a.add_argument("--seed", type=int, default=0)
  a.add_argument("--no-progress", action="store_true")
  a.add_argument("overrides", nargs="*")
  a.set_defaults(fn=cmd_attack)

  q = sub.add_parser("quickstart", parents=[cache], help="standard vs PGD-AT on the shipped digits (about 2 minutes on 2 cores)",
                     description="Trains a standard and a PGD-AT SmallCNN on sklearn's digits (shipped, no "
                                 "download), evaluates clean and PGD-20 accuracy, writes a JSON report and a "
                                 "robust-accuracy-vs-eps plot.")
  q.add_argument("--output-dir", default="runs/quickstart")
  q.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
  q.add_argument("--no-resume", action="store_true")
  q.add_argument("--no-progress", action="store_true")
  q.set_defaults(fn=cmd_quickstart)

  x = sub.add_parser("export-summary", help="a run's AutoAttack result as RobustBench model-info JSON",
                     description="Exports the newest AutoAttack evaluation recorded in RUN_DIR/evaluations.jsonl as "
                                 "RobustBench's model-info fields (clean_acc, autoattack_acc, eps, architecture, "
                                 "dataset) plus threat_model, n_points and the record's provenance.")
  x.add_argument("run_dir", metavar="RUN_DIR")
  x.add_argument("--out", help="write the JSON here (default: print it)")
  x.add_argument("--name", help="the model's name in the summary (default: the run directory)")
  x.set_defaults(fn=cmd_export_summary)

  l = sub.add_parser("list", help="list configs, methods, attacks, models and datasets")
  l.add_argument("--keys", action="store_true", help="list every config key with its meaning instead")
  l.add_argument("--attack", metavar="NAME", help="describe one attack: threat models and every option with its default")
  l.add_argument("--protocols", action="store_true",
                 help="list the papers' evaluation protocols (jaxrobust evaluate --protocol NAME)")
  l.set_defaults(fn=cmd_list)
  return p


def main(argv=None) -> int:
  from jaxrobust.train.checkpoint import CheckpointError
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if extra:
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if overrides:
      parser.error(f"the override(s) {' '.join(overrides)} come after an option's value; write every key=value "
                   f"override after the options, e.g. jaxrobust {args.command} --output-dir DIR ... "
                   f"{' '.join(overrides)}")
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  try:
    if not getattr(args, "no_compile_cache", True):
      from jaxrobust.compile_cache import enable_compile_cache
      enable_compile_cache()
    return args.fn(args)
  except (ValueError, FileNotFoundError, PermissionError, CheckpointError, FloatingPointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
