"""The defaults every config starts from, the meaning of every key, and validation.

``KEYS`` declares every config key the library reads, ``"section.key": meaning``. ``base_config()``
holds the default of each key every run has; the keys marked "(optional)" are absent unless a config
sets them, and the code's default is the one the meaning names (keeping the binary-task keys out of
``base_config`` keeps the config fingerprint, and with it the resumability, of existing runs).
The ``model`` and ``method`` sections are open: besides ``name`` they take the keyword parameters of
the model factory (``jaxrobust.models.get_model``) and of the method factory
(``jaxrobust.methods.registry.get_method``), checked against those factories by ``validate_config``.
"""

from __future__ import annotations

import copy
import difflib
import re
import warnings

SECTIONS = ("data", "model", "method", "optim", "train", "eval")
OPEN_SECTIONS = ("model", "method")

KEYS: dict[str, str] = {
    "seed": "PRNG seed of the model init, the data order and the training attacks",
    "output_dir": "run directory: config.json, checkpoints/, metrics.jsonl, report.json (best/ with selection)",
    "config_name": "name (or file) of the config module it was loaded from; set by load_config",
    # data
    "data.name": "dataset name (`jaxrobust list`)",
    "data.source": "where to load it from: 'auto', 'shipped', 'files' or 'tfds'",
    "data.data_dir": "folder holding the dataset files (None: $JAXROBUST_DATA_DIR, the shared data, ~/.jaxrobust)",
    "data.augment": "random 4-pixel crop + horizontal flip of training batches",
    "data.train_subset": "train on n training images only (the first n, or n random ones with subset_seed)",
    "data.test_subset": "evaluate on n test images only (the first n, or n random ones with subset_seed)",
    "data.subset_seed": "None: subsets are the first rows; an int: a seeded random choice of rows",
    "data.label_mode": "label variant of the dataset: 'fine' / 'coarse' for cifar100, 'attr:<Name>' for celeb_a",
    "data.binary_task": "(optional) single-logit task: 'ova' (binary_positive_class vs rest), 'coarse' "
                        "(a CIFAR-100 superclass vs rest) or 'attr:<Name>' (a CelebA attribute); absent: multi-class",
    "data.binary_positive_class": "(optional) the positive class index (or a list) of a binary task",
    "data.val_fraction": "(optional) fraction of each class held out for validation in a binary task (0.2; 0: none)",
    "data.split_seed": "(optional) seed of the per-class train/validation split of a binary task (0)",
    "data.sampler": "(optional) training batches: 'shuffle', 'positive_balanced' (half positives, AdAP) or "
                    "'auto' (what the method declares in Method.batches: positive_balanced for AdAP / AP Max.); absent: 'shuffle'",
    "data.pos_num": "(optional) positives per batch of the positive-balanced sampler (None: half the batch)",
    # model (open: get_model's keyword parameters too)
    "model.name": "model name (`jaxrobust list`), or 'package.module:function' returning your own JAX model "
                  "(jaxrobust.models.external); other keys are get_model / backbone (or that function's) keyword arguments",
    # method (open: the method factory's keyword parameters too)
    "method.name": "training method (`jaxrobust list`); other keys are the method factory's hyper-parameters",
    # optim
    "optim.name": "optimiser: 'sgd' or 'adam' (coupled L2 weight decay, as torch)",
    "optim.lr": "peak learning rate",
    "optim.momentum": "SGD momentum",
    "optim.nesterov": "Nesterov momentum",
    "optim.weight_decay": "L2 weight decay added to the gradient",
    "optim.schedule": "learning-rate schedule: 'constant', 'piecewise' or 'cosine'",
    "optim.boundaries": "epochs (0-indexed) after which a piecewise schedule multiplies the lr by decay",
    "optim.decay": "piecewise factor: one value, or one per boundary",
    "optim.warmup_epochs": "linear warm-up from 0 over this many epochs",
    # train
    "train.epochs": "training epochs",
    "train.batch_size": "global batch size (split over the devices)",
    "train.checkpoint_every_steps": "save a checkpoint every n steps (and at the end)",
    "train.log_every_steps": "write a metrics.jsonl line every n steps",
    "train.tensorboard": "also write the metrics.jsonl scalars, selection scores and the final evaluation as "
                         "TensorBoard event files in <output_dir>/tensorboard (true / false, default false)",
    "train.num_devices": "devices of the data-parallel mesh (None: all local devices)",
    "train.eval_every_epochs": "score the model for model selection every n epochs (0: never)",
    "train.select_best": "keep the best-scoring checkpoint in <output_dir>/best and evaluate it",
    "train.select_attack": "attack spec the selection scores robust accuracy under (None: clean accuracy)",
    "train.select_examples": "score the selection on the first n points of the selection split (None: all)",
    "train.select_split": "split the selection scores on: 'test' (UDR's code) or 'val' (the validation split of "
                          "data.val_fraction, binary tasks; AdAP)",
    "train.select_metric": "'accuracy', or 'ap' (average precision of a single-logit model: clean AP without "
                           "select_attack, robust AP under it; AdAP)",
    "train.init_from": "start from the weights of this run directory's newest checkpoint (fine-tuning)",
    "train.init_reinit_head": "with init_from: keep a freshly initialised head (AP Max. from a CE model)",
    "train.on_corrupt_checkpoint": "(optional) when the newest checkpoint fails its checksums: 'error' (the default: "
                                   "stop, naming the previous good one) or 'previous' (move it aside to "
                                   "checkpoints/corrupt-<step> and resume from the previous good one)",
    # eval
    "eval.batch_size": "evaluation batch size",
    "eval.max_examples": "evaluate the first n test points only (None: all)",
    "eval.eps_grid": "eps values of the robust-accuracy-vs-eps curve (quickstart)",
    "eval.attacks": "attack specs {'name': registry name, 'label': shown name, ...attack config} of the report; "
                    "evaluator keys: max_examples (first m points), two_class_logits (attack [0, z] of a single logit), "
                    "step_size_ratio (step_size = ratio * eps)",
    "eval.checks": "run the gradient-masking checks after the evaluation",
    "eval.ap_attacks": "attack specs under which the report adds robust average precision (binary tasks)",
    "eval.transfer_from": "run directory of a surrogate model (AdAP: the CE-trained one); the AP report adds a "
                          "transfer column, PGD-20 (BCE, step 0.003, eps 8/255) crafted on it",
}


# The declared type of the numeric keys: an integer key refuses 64.5 (it would train with 64 while config.json
# records 64.5), a number key refuses 'abc'; None stays allowed where the meaning names it.
INT_KEYS = ("seed", "data.train_subset", "data.test_subset", "data.subset_seed", "data.split_seed", "data.pos_num",
            "train.epochs", "train.batch_size", "train.checkpoint_every_steps", "train.log_every_steps",
            "train.num_devices", "train.eval_every_epochs", "train.select_examples", "eval.batch_size",
            "eval.max_examples")
FLOAT_KEYS = ("optim.lr", "optim.momentum", "optim.weight_decay", "optim.warmup_epochs", "data.val_fraction")


def check_types(cfg: dict) -> None:
  """Refuses a value of the wrong type for the declared integer and number keys, and a string for a
  method hyper-parameter whose default is a number (``method.eps=abc``)."""
  def value(path):
    node = cfg
    for k in path.split("."):
      if not isinstance(node, dict) or k not in node:
        return None
      node = node[k]
    return node

  for path in INT_KEYS:
    v = value(path)
    if v is None:
      continue
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
      raise ValueError(f"{path} must be an integer; got {v!r} (write e.g. {path}={_example_int(v)})")
  for path in FLOAT_KEYS:
    v = value(path)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
      raise ValueError(f"{path} must be a number; got {v!r}")
  method = cfg.get("method", {})
  if isinstance(method, dict) and "name" in method:
    from jaxrobust.methods.registry import get_method, method_names
    if method["name"] in method_names():
      defaults = get_method(method["name"]).hparams
      for k, v in method.items():
        d = defaults.get(k)
        if isinstance(d, (int, float)) and not isinstance(d, bool) and isinstance(v, (str, bool)):
          raise ValueError(f"method.{k} must be a number (its default is {d!r}); got {v!r}")
        if type(d) is int and isinstance(v, float) and not v.is_integer():
          raise ValueError(f"method.{k} must be an integer (its default is {d!r}); got {v!r}")


def _example_int(v) -> int:
  try:
    return int(float(v))
  except (TypeError, ValueError):
    return 1


def base_config() -> dict:
  return copy.deepcopy({
      "seed": 0,
      "output_dir": "runs/default",
      "data": {"name": "digits", "source": "auto", "data_dir": None, "augment": False,
               "train_subset": None, "test_subset": None, "subset_seed": None, "label_mode": None},
      "model": {"name": "small_cnn", "head": "linear"},
      "method": {"name": "standard"},
      "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
                "schedule": "piecewise", "boundaries": (), "decay": 0.1, "warmup_epochs": 0.0},
      # Model selection (UDR's code keeps the best test PGD-20 epoch; Bui et al. 2022): see KEYS.
      "train": {"epochs": 10, "batch_size": 128, "checkpoint_every_steps": 200, "log_every_steps": 20,
                "num_devices": None, "eval_every_epochs": 0, "select_best": False, "select_attack": None,
                "select_examples": None, "select_split": "test", "select_metric": "accuracy",
                "init_from": None, "init_reinit_head": True},
      "eval": {"batch_size": 256, "max_examples": None, "eps_grid": (), "attacks": [], "checks": False,
               "ap_attacks": [], "transfer_from": None},
  })


def key_names(section: str | None = None) -> list[str]:
  """Declared keys ('section.key', or top-level names), all or those of one section."""
  if section is None:
    return list(KEYS)
  return [k for k in KEYS if k.startswith(section + ".")]


def nearest(name: str, candidates) -> str:
  """' (did you mean X?)' for the closest candidate, or '' when none is close."""
  close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
  return f" (did you mean {close[0]}?)" if close else ""


def unknown_key_error(path: str, candidates) -> ValueError:
  """The error for an undeclared key: names the nearest valid key, else lists the section's keys.

  Within one section the leaf names are compared (``optim.learning_rate`` is not "near" ``optim.name``).
  """
  candidates = list(candidates)
  section, _, leaf = path.rpartition(".")
  same = [c for c in candidates if section and c.startswith(section + ".")]
  if same:
    leaves = {c[len(section) + 1:]: c for c in same}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    hint = f" (did you mean {leaves[close[0]]}?)" if close else f"; valid keys: {', '.join(sorted(same))}"
  else:
    hint = nearest(path, candidates) or f"; valid keys: {', '.join(sorted(candidates))}"
  return ValueError(f"unknown key {path!r}{hint}")


def check_keys(cfg: dict) -> None:
  """Refuses a key that no code reads: undeclared top-level or section keys, and model / method keys
  the model or method factory does not take. The error names the nearest valid key."""
  for k in cfg:
    if k not in SECTIONS and k not in KEYS:
      raise unknown_key_error(k, [*KEYS, *SECTIONS])
  for section in SECTIONS:
    if section in OPEN_SECTIONS:
      continue
    declared = key_names(section)
    for k in cfg[section]:
      if f"{section}.{k}" not in KEYS:
        raise unknown_key_error(f"{section}.{k}", declared)
  _check_model_keys(cfg["model"])
  _check_method_keys(cfg["method"])


def _check_model_keys(model: dict) -> None:
  from jaxrobust.models import MODEL_NAMES, model_keywords
  from jaxrobust.models.external import is_factory_path
  name = model.get("name")
  if name not in MODEL_NAMES and not is_factory_path(name):
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}, or a factory of your own "
                     "model as 'package.module:function' (jaxrobust.models.external)")
  valid = [f"model.{k}" for k in ("name", *model_keywords(name))]
  for k in model:
    if f"model.{k}" not in valid:
      raise unknown_key_error(f"model.{k}", valid)


_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def _check_method_keys(method: dict) -> None:
  """Builds the method (cheap: no model, no tracing), so a key a factory forwards to another factory is
  checked where it lands; the suggestions are the hyper-parameters the default method records."""
  from jaxrobust.methods.registry import get_method
  if "name" not in method:
    raise ValueError("the method section needs a 'name'")
  hparams = {k: v for k, v in method.items() if k != "name"}
  try:
    get_method(method["name"], **hparams)
  except TypeError as e:
    bad = _UNEXPECTED.search(str(e))
    if bad is None:
      raise
    known = sorted(get_method(method["name"]).hparams)
    raise unknown_key_error(f"method.{bad.group(1)}", [f"method.{k}" for k in ("name", *known)]) from None


def validate_config(cfg: dict) -> None:
  """Structure, declared keys and value ranges; raises ValueError before any training starts."""
  for section in SECTIONS:
    if section not in cfg or not isinstance(cfg[section], dict):
      raise ValueError(f"config is missing the section {section!r}")
  check_types(cfg)
  t = cfg["train"]
  if t.get("on_corrupt_checkpoint", "error") not in ("error", "previous"):
    raise ValueError(f"train.on_corrupt_checkpoint must be 'error' or 'previous'; got {t['on_corrupt_checkpoint']!r}")
  if int(t["epochs"]) < 1:
    raise ValueError(f"train.epochs must be >= 1; got {t['epochs']}")
  if int(t["batch_size"]) < 1:
    raise ValueError(f"train.batch_size must be >= 1; got {t['batch_size']}")
  if t.get("tensorboard", False) not in (True, False, "true", "false"):  # 'true': as key=value overrides give it
    raise ValueError(f"train.tensorboard must be true or false; got {t['tensorboard']!r}")
  if t.get("select_best"):
    if int(t.get("eval_every_epochs") or 0) < 1:
      raise ValueError("train.select_best needs train.eval_every_epochs >= 1 (how often to score the model)")
    if t.get("select_split", "test") not in ("test", "val"):
      raise ValueError(f"train.select_split must be 'test' or 'val'; got {t['select_split']!r}")
    if t.get("select_metric", "accuracy") not in ("accuracy", "ap"):
      raise ValueError(f"train.select_metric must be 'accuracy' or 'ap'; got {t['select_metric']!r}")
    if t.get("select_split") == "val" and not (cfg["data"].get("binary_task") and cfg["data"].get("val_fraction", 0.2)):
      raise ValueError("train.select_split='val' needs a validation split: a binary task (data.binary_task) with "
                       "data.val_fraction > 0")
    sa = t.get("select_attack")
    if sa is not None and (not isinstance(sa, dict) or "name" not in sa):
      raise ValueError(f"train.select_attack must be an attack spec with a 'name' (or null for clean accuracy); "
                       f"got {sa!r}")
  for a in cfg["eval"].get("attacks", []):
    if "name" not in a:
      raise ValueError(f"every eval attack needs a 'name'; got {a}")
    if isinstance(a.get("eps"), (str, bool)):
      raise ValueError(f"eval attack {a.get('label', a['name'])!r}: eps must be a number; got {a['eps']!r}")
    if float(a.get("eps", 0.0)) < 0:
      raise ValueError(f"eval attack {a.get('label', a['name'])!r} has eps < 0: {a['eps']}")
  # Attack options are checked now, not after training: a misspelt one names the nearest valid one.
  from jaxrobust.evaluate.specs import attack_kwargs, check_attack_options, check_specs
  for a in [*cfg["eval"].get("attacks", []), *([t["select_attack"]] if t.get("select_attack") else [])]:
    try:
      check_attack_options(a)
      if a["name"] == "autoattack":  # its factory checks the cascade (components, their options) when built
        from jaxrobust.attacks.registry import get_attack
        get_attack(a["name"], **attack_kwargs(a))
    except ValueError as e:
      raise ValueError(f"eval attack {a.get('label', a['name'])!r}: {e}") from None
  check_specs(cfg["eval"].get("attacks", []))  # eps, labels and sources too, before training
  for k in ("eps",):
    if k in cfg["method"] and float(cfg["method"][k]) < 0:
      raise ValueError(f"method.{k} must be >= 0; got {cfg['method'][k]}")
  check_keys(cfg)
  warn_known_pitfalls(cfg)


def warn_known_pitfalls(cfg: dict) -> None:
  """Warns about valid settings known to train badly."""
  if cfg["method"].get("name") == "adp" and cfg["optim"].get("name", "sgd") == "sgd":
    # At initialisation the log-det term's gradient is 14-20x the cross-entropy's (SmallCNN members, measured):
    # Pang et al. (2019) and Bui et al. (2021) train ADP with Adam, whose per-parameter scaling absorbs it.
    warnings.warn("method adp with optim.name=sgd: ADP's log-det diversity term dominates the gradient early and "
                  "SGD runs of it have collapsed to near-uniform members; its authors train with Adam "
                  "(optim.name=adam optim.lr=0.001)", stacklevel=2)
