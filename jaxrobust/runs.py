"""A trained run as a pure model: ``load_run(run_dir) -> LoadedRun(apply, variables, config, module, step)``.

    run = load_run("runs/quickstart/pgd_at")           # the final checkpoint
    logits = run.apply(run.variables, x)                 # x: (B, H, W, C) in [0, 1] -> (B, K)
    best = load_run("runs/cifar10_awp_at", best=True)    # the checkpoint kept by train.select_best

A run directory is the ``output_dir`` of ``jaxrobust train`` (or ``Trainer``): its ``config.json``
says how to build the model (``jaxrobust.models``), ``checkpoints/`` (and ``best/``) hold orbax
checkpoints of the train state, of which only the model variables are restored. Nothing else is
built: no Trainer, no optimiser, no data (load the test split with the config's data section).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class LoadedRun(NamedTuple):
  """apply(variables, x) -> logits (inference mode); variables {'params', 'batch_stats'}; config the
  run's validated config (with overrides); module the Flax model; step the checkpoint's step."""
  apply: Callable
  variables: dict
  config: dict
  module: Any
  step: int


def load_run(run_dir: str, *, best: bool = False, overrides=()) -> LoadedRun:
  """The model of a run directory, restored from its final checkpoint (``best``: ``<run_dir>/best``).

  overrides: ``key.sub=value`` changes to the run's config (e.g. ``data.test_subset=1000`` or
  ``eval.batch_size=100``); ones that change the model's shapes fail the shape check.
  Raises FileNotFoundError for a folder that is not a run, a run without a checkpoint, or (``best``)
  a run without a selected checkpoint; CheckpointError for an unreadable one or one of another model.
  """
  from jaxrobust.configs import apply_overrides, validate_config
  from jaxrobust.models import make_apply
  from jaxrobust.train.checkpoint import restore_variables
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{run_dir!r} is not a jaxrobust run directory (no config.json); "
                            "pass the --output-dir of a `jaxrobust train` run")
  with open(config_path) as f:
    cfg = apply_overrides(json.load(f), overrides)
  validate_config(cfg)
  cfg["output_dir"] = run_dir
  folder = os.path.join(os.path.abspath(run_dir), "best" if best else "checkpoints")
  if not _has_checkpoint(folder):
    if best:
      raise FileNotFoundError(f"{run_dir!r} has no selected checkpoint (train with train.select_best=true "
                              "train.eval_every_epochs=N)")
    raise FileNotFoundError(f"no checkpoint in {folder!r}")
  module, image_shape = model_of(cfg)
  variables, step = restore_variables(folder)
  variables = _checked(variables, module, image_shape, folder)
  return LoadedRun(make_apply(module), variables, cfg, module, step)


def load_model(factory: str, config: str = "quickstart_digits", *, params: str | None = None,
               overrides=()) -> LoadedRun:
  """A model jaxrobust did not train, as a LoadedRun (step 0): ``factory`` 'package.module:function' returns it
  (``models.external``: a linen or NNX module, or a pure function with its params).

  config: the built-in config name or .py file whose data and eval sections (and seed) apply.
  params: a file of ``flax.serialization.to_bytes(variables)`` (the ``{'params', 'batch_stats'}`` of
    ``models.init_model(models.external.as_module(model), ...)``); without it, an NNX model or function keeps
    the weights it was returned with and a linen module is initialised from the config's seed.
  """
  from flax import serialization
  from jaxrobust.configs import load_config
  from jaxrobust.models import init_model, make_apply
  cfg = load_config(config, [f"model.name={factory}", *overrides])
  module, image_shape = model_of(cfg)
  variables = init_model(module, jax.random.PRNGKey(int(cfg["seed"])), image_shape)
  if params is not None:
    if not os.path.isfile(params):
      raise FileNotFoundError(f"no params file {params!r} (write one with flax.serialization.to_bytes(variables))")
    with open(params, "rb") as f:
      try:
        restored = serialization.msgpack_restore(f.read())
      except Exception as e:  # msgpack raises several types for a file that is not one
        raise ValueError(f"params file {params!r} is not a flax.serialization file ({type(e).__name__}: {e})") from e
    if not isinstance(restored, dict) or "params" not in restored:
      raise ValueError(f"params file {params!r} does not hold a variables dict {{'params': ..., 'batch_stats': ...}}")
    variables = _checked({"params": restored["params"], "batch_stats": restored.get("batch_stats") or {}},
                         module, image_shape, params)
  return LoadedRun(make_apply(module), variables, cfg, module, 0)


def load_ensemble(run_dirs, *, best: bool = False, overrides=()) -> LoadedRun:
  """Several runs as one ensemble model (``models.Ensemble`` of their models, any architectures): the prediction
  is the mean of their softmax probabilities (Bui et al. 2023's ENS victims: separately trained members).

  The runs must share the dataset (name, label mode, binary task); the result's config is the first run's with
  ``model`` = {'name': 'ensemble', 'members': the runs' model sections} and ``ensemble_of`` = the run folders
  (a record, not a config to train from); its step is the first run's.
  """
  from jaxrobust.models import make_apply
  from jaxrobust.models.ensemble import Ensemble
  run_dirs = list(run_dirs)
  if len(run_dirs) < 2:
    raise ValueError(f"an ensemble of runs needs at least 2 run folders; got {run_dirs}")
  runs = [load_run(d, best=best, overrides=overrides) for d in run_dirs]
  data = [{k: r.config["data"].get(k) for k in ("name", "label_mode", "binary_task")} for r in runs]
  for d, r in zip(run_dirs[1:], data[1:]):
    if r != data[0]:
      raise ValueError(f"the runs of an ensemble must share their data: {run_dirs[0]!r} has {data[0]} but {d!r} has {r}")
  module = Ensemble(members=tuple(r.module for r in runs))
  variables = {}
  for collection in ("params", "batch_stats"):
    part = {f"members_{i}": r.variables[collection] for i, r in enumerate(runs) if r.variables.get(collection)}
    if part:
      variables[collection] = part
  cfg = dict(runs[0].config, model={"name": "ensemble", "members": [r.config["model"] for r in runs]},
             ensemble_of=[os.path.abspath(d) for d in run_dirs])
  return LoadedRun(make_apply(module), variables, cfg, module, runs[0].step)


def load_torch_run(checkpoint: str | None = None, arch: str | None = None, *, robustbench: str | None = None,
                   model_dir: str | None = None, dataset: str = "cifar10", threat_model: str = "Linf",
                   overrides=()) -> LoadedRun:
  """A PyTorch checkpoint (``checkpoint`` + ``arch``, see ``models.TORCH_ARCHS``) or a RobustBench one already on
  disk (``robustbench`` name + ``model_dir``, RobustBench's layout ``<model_dir>/<dataset>/<threat_model>/<name>.pt``)
  as a LoadedRun, so that it evaluates like a trained run.

  The config is the base config on ``dataset`` with the model section of the converted architecture (its
  in-model mean/std included); overrides as in ``load_run`` (e.g. ``data.test_subset=1000``). Step 0.
  """
  from jaxrobust.configs import apply_overrides, base_config, validate_config
  from jaxrobust.data import dataset_info
  from jaxrobust.models import make_apply, torch_import
  if (checkpoint is None) == (robustbench is None):
    raise ValueError("give either a PyTorch checkpoint (with its arch) or a RobustBench model name (with model_dir)")
  if checkpoint is not None and arch is None:
    raise ValueError(f"a PyTorch checkpoint needs its architecture; one of: {', '.join(torch_import.TORCH_ARCHS)}")
  if robustbench is not None and model_dir is None:
    raise ValueError("a RobustBench model needs model_dir, the folder robustbench.utils.load_model(model_dir=...) uses")
  cfg = base_config()
  cfg["data"]["name"] = dataset
  cfg = apply_overrides(cfg, overrides)
  info = dataset_info(dataset)
  if robustbench is not None:
    module, variables, arch = torch_import.load_robustbench_model(robustbench, model_dir, dataset, threat_model)
  else:
    module, variables = torch_import.load_torch_model(checkpoint, arch, info.num_classes,
                                                      input_shape=tuple(info.image_shape))
  spec = torch_import.TORCH_ARCHS[arch]
  cfg["model"] = {"name": spec.model, "mean": None if module.mean is None else list(module.mean),
                  "std": None if module.std is None else list(module.std), **dict(spec.model_kwargs)}
  validate_config(cfg)
  return LoadedRun(make_apply(module), variables, cfg, module, 0)


def model_of(cfg: dict):
  """(Flax module, image shape (H, W, C)) of a config, from the dataset's declared facts (no data read)."""
  from jaxrobust.data import dataset_info
  from jaxrobust.train.loop import build_model
  d = cfg["data"]
  info = dataset_info(d["name"], None if d.get("binary_task") else d.get("label_mode"))
  num_classes = 2 if d.get("binary_task") else info.num_classes  # binary tasks relabel to {0, 1}
  return build_model(cfg, num_classes, tuple(info.image_shape)), tuple(info.image_shape)


def _has_checkpoint(folder: str) -> bool:
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _checked(variables: dict, module, image_shape, folder: str) -> dict:
  """variables cast to the model's dtypes, after checking they have exactly the model's entries and shapes."""
  from jaxrobust.models import init_model
  from jaxrobust.train.checkpoint import CheckpointError
  expected = jax.eval_shape(lambda: init_model(module, jax.random.PRNGKey(0), image_shape))
  expected = {"params": expected["params"], "batch_stats": expected.get("batch_stats", {})}
  want = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}
  have = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}
  if set(want) != set(have):
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    raise CheckpointError(f"checkpoint in {folder!r} does not match the model of the run's config: "
                          f"{len(missing)} entries missing (e.g. {missing[:3]}), {len(extra)} unexpected "
                          f"(e.g. {extra[:3]})")
  for k, leaf in want.items():
    if tuple(jnp.shape(have[k])) != tuple(leaf.shape):
      raise CheckpointError(f"checkpoint in {folder!r} does not match the model of the run's config: {k} has "
                            f"shape {tuple(jnp.shape(have[k]))} in the checkpoint but {tuple(leaf.shape)} in the model")
  return jax.tree.map(lambda s, v: jnp.asarray(v, s.dtype), expected, variables)


def evaluate_protocol(run_dir, protocol: str, *, best: bool = False, max_examples: int | None = None,
                      seed: int = 0, progress: bool = True, source_run: str | None = None,
                      overrides=(), mesh=None) -> dict:
  """A paper's evaluation (``jaxrobust.configs.protocols``) of a trained run, beside the paper's rows.

  run_dir: one run folder, or a list of them evaluated as one ensemble (``load_ensemble``), as a protocol of
  separately trained members (``Protocol.members``) needs.

  Returns {'protocol', 'paper', 'paper_row', 'columns', 'this_run': {column: value}, 'reference',
  'missing', 'notes', 'evaluation': the evaluator's full report, 'provenance'}. Accuracies are in %,
  AP in [0, 1]. ``max_examples`` caps every attack (a reduced run; the paper's counts otherwise).
  ``source_run``: the CE-trained surrogate of a protocol with a transfer column (AdAP).
  Raises ValueError when the run's data is not the protocol's.
  """
  import jax
  import numpy as np
  from jaxrobust.configs.protocols import check_run_matches, get_protocol, paper_row
  from jaxrobust.data import load_splits
  from jaxrobust.evaluate.records import provenance
  spec = get_protocol(protocol)
  run_dirs = [run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir)
  if spec.members and len(run_dirs) < 2:
    raise ValueError(f"protocol {spec.name!r} attacks an ensemble of {spec.members} separately trained runs: pass "
                     f"one run folder per member (jaxrobust evaluate --run-dir R1 --run-dir R2 ...)")
  if not spec.members and len(run_dirs) > 1:
    raise ValueError(f"protocol {spec.name!r} evaluates one run; an ensemble model is trained as one "
                     "(model.members=M)")
  run = load_run(run_dirs[0], best=best, overrides=overrides) if len(run_dirs) == 1 else \
      load_ensemble(run_dirs, best=best, overrides=overrides)
  check_run_matches(spec, run.config)
  test = load_splits(run.config["data"]).test
  attacks = [dict(a) for a in spec.attacks]
  batch_size = int(run.config["eval"]["batch_size"])
  key = jax.random.PRNGKey(seed)
  this_run, missing = {}, list(spec.missing)
  if spec.metric == "ap":
    from jaxrobust.evaluate.average_precision import evaluate_ap, transfer_spec
    if source_run is not None:
      source = load_run(source_run)
      attacks.append(transfer_spec(source.apply, source.variables))
      missing = [m for m in missing if m != "transfer PGD-20"]
    report = evaluate_ap(run.apply, run.variables, test, attacks, mesh=mesh, batch_size=batch_size, key=key,
                         max_examples=max_examples)
    this_run["clean"] = float(report["clean_ap"])
    this_run.update({label: float(v) for label, v in report["robust_ap"].items()})
  else:
    from jaxrobust.evaluate.robust import DEFAULT_METRICS, RobustEvaluator
    metrics = None
    if spec.r_div:
      from jaxrobust.evaluate.latent_divergence import LatentDivergence
      metrics = [*DEFAULT_METRICS, LatentDivergence([spec.r_div])]
    evaluator = RobustEvaluator.for_module(run.module, mesh=mesh, features=bool(spec.r_div))
    report = evaluator.evaluate(run.variables, test, attacks, batch_size=batch_size, max_examples=max_examples,
                                progress=progress, key=key, metrics=metrics)
    this_run["clean"] = 100.0 * float(report["clean_acc"])
    this_run.update({label: 100.0 * float(v) for label, v in report["robust_acc"].items()})
    if spec.r_div:
      this_run["R-DIV"] = float(report["r_div"][spec.r_div]["ratio"])
    ensemble = report.get("ensemble", {})
    if spec.ensemble_success and spec.ensemble_success in ensemble.get("attack_success", {}):
      success = ensemble["attack_success"][spec.ensemble_success]
      this_run.update({"A-All": success["A_all"], "A-Avg": success["A_avg"]})
      this_run.update({f"A-{i + 1}": a for i, a in enumerate(success["A_i"])})
    for label in spec.ensemble_success_each:
      success = ensemble.get("attack_success", {}).get(label)
      if success is not None:
        this_run.update({f"{label} A-All": success["A_all"], f"{label} A-Avg": success["A_avg"]})
    if spec.transferability:
      table = ensemble.get("transferability")
      if table is not None and "S11" in table:
        this_run.update({c: float(table[c]) for c in ("T", "S11", "S10", "S01", "S00", "nT", "a_single")})
      else:
        missing += ["T", "S11", "S10", "S01", "S00", "nT", "a_single"]
    if spec.clean_logits == "unnormalized_cosine" and run.config["model"].get("head") == "cosine":
      from jaxrobust.models import make_apply
      unnormalized = make_apply(run.module.clone(cosine_normalize_features=False))
      clean = RobustEvaluator(unnormalized, mesh=mesh).evaluate(run.variables, test, [], batch_size=batch_size,
                                                                  max_examples=max_examples, progress=False)
      this_run["clean (model logits)"] = this_run["clean"]
      this_run["clean"] = 100.0 * float(clean["clean_acc"])
  columns = list(spec.columns) + [c for c in this_run if c not in spec.columns]
  return {"protocol": spec.name, "paper": spec.paper, "metric": spec.metric, "paper_row": paper_row(spec, run.config["method"]),
          "columns": columns, "this_run": this_run, "reference": {k: dict(v) for k, v in spec.reference.items()},
          "missing": missing, "notes": spec.notes, "evaluation": report,
          "provenance": {**provenance(seed=seed, dataset=test, n=int(report["n"]), attacks=spec.attacks,
                                      run_dir=os.path.abspath(run_dirs[0]),
                                      run_dirs=[os.path.abspath(d) for d in run_dirs], checkpoint_step=run.step,
                                      best=best, max_examples=max_examples, method=run.config["method"],
                                      jax=jax.__version__, numpy=np.__version__), "n": int(report["n"])}}


def protocol_table(result: dict) -> str:
  """Markdown: the run's row, then the paper's rows (its own row marked), in the paper's columns."""
  cols = result["columns"]

  def cell(v, column):
    if v is None:
      return "-"
    if result["metric"] == "ap":
      return f"{v:.4f}"
    return f"{v:.3f}" if column == "R-DIV" else f"{v:.2f}"
  lines = [f"{result['paper']}", "", "| row | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  lines.append("| this run (" + result["provenance"]["method"].get("name", "?") + ", n="
               f"{result['provenance']['n']}) | " + " | ".join(cell(result["this_run"].get(c), c) for c in cols) + " |")
  for row, values in result["reference"].items():
    mark = " (this method)" if row == result["paper_row"] else ""
    lines.append(f"| paper: {row}{mark} | " + " | ".join(cell(values.get(c), c) for c in cols) + " |")
  if result["missing"]:
    lines.append(f"\nnot run: {', '.join(result['missing'])}")
  if result["notes"]:
    lines.append(f"note: {result['notes']}")
  return "\n".join(lines)
