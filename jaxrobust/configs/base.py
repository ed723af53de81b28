"""The defaults every config starts from, and validation."""

from __future__ import annotations

import copy


def base_config() -> dict:
  return copy.deepcopy({
      "seed": 0,
      "output_dir": "runs/default",
      "data": {"name": "digits", "source": "auto", "data_dir": None, "augment": False,
               "train_subset": None, "test_subset": None, "subset_seed": None, "label_mode": None},
      # Extra model kwargs (head, mean, std, ...) go in this section and reach get_model.
      "model": {"name": "small_cnn", "head": "linear"},
      # Method hyper-parameters other than 'name' are passed to the method factory.
      "method": {"name": "standard"},
      "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
                "schedule": "piecewise", "boundaries": (), "decay": 0.1, "warmup_epochs": 0.0},
      "train": {"epochs": 10, "batch_size": 128, "checkpoint_every_steps": 200, "log_every_steps": 20,
                "num_devices": None,
                # Model selection (UDR's code keeps the best test PGD-20 epoch): every eval_every_epochs
                # epochs score the model on the first select_examples test points, clean accuracy or
                # robust accuracy under select_attack (an eval attack spec), and keep the best
                # checkpoint in <output_dir>/best; the final evaluation then uses it.
                "eval_every_epochs": 0, "select_best": False, "select_attack": None, "select_examples": None},
      "eval": {"batch_size": 256, "max_examples": None, "eps_grid": (),
               # each attack: {'name': registry name, 'label': shown name, ...config}
               "attacks": [], "checks": False},
  })


def validate_config(cfg: dict) -> None:
  for section in ("data", "model", "method", "optim", "train", "eval"):
    if section not in cfg or not isinstance(cfg[section], dict):
      raise ValueError(f"config is missing the section {section!r}")
  t = cfg["train"]
  if int(t["epochs"]) < 1:
    raise ValueError(f"train.epochs must be >= 1; got {t['epochs']}")
  if int(t["batch_size"]) < 1:
    raise ValueError(f"train.batch_size must be >= 1; got {t['batch_size']}")
  if t.get("select_best"):
    if int(t.get("eval_every_epochs") or 0) < 1:
      raise ValueError("train.select_best needs train.eval_every_epochs >= 1 (how often to score the model)")
    sa = t.get("select_attack")
    if sa is not None and (not isinstance(sa, dict) or "name" not in sa):
      raise ValueError(f"train.select_attack must be an attack spec with a 'name' (or null for clean accuracy); "
                       f"got {sa!r}")
  for a in cfg["eval"].get("attacks", []):
    if "name" not in a:
      raise ValueError(f"every eval attack needs a 'name'; got {a}")
    if float(a.get("eps", 0.0)) < 0:
      raise ValueError(f"eval attack {a.get('label', a['name'])!r} has eps < 0: {a['eps']}")
  for k in ("eps",):
    if k in cfg["method"] and float(cfg["method"][k]) < 0:
      raise ValueError(f"method.{k} must be >= 0; got {cfg['method'][k]}")
