"""Declarative run configs: one module per protocol, each with ``get_config() -> dict``.

A config is a nested dict (data, model, method, optim, train, eval) whose keys are declared, each
with its meaning, in ``jaxrobust.configs.base.KEYS``. ``load_config(name_or_path, overrides)``
returns a validated deep copy of a built-in config (a module of this package, `jaxrobust list`) or of
a user's own config file (a ``.py`` file defining ``get_config()``), with ``key.sub=value``
overrides applied; values are parsed as Python literals (numbers, tuples, lists, None,
True/False) or kept as strings. An undeclared key is refused with the nearest valid key.
Every config module's docstring gives the command that runs it.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import os
import pkgutil

from jaxrobust.configs.base import (KEYS, OPEN_SECTIONS, SECTIONS, base_config, nearest, unknown_key_error,
                                    validate_config)

__all__ = ["KEYS", "base_config", "config_names", "load_config", "apply_overrides", "validate_config"]


def config_names() -> list[str]:
  import jaxrobust.configs as pkg
  return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("base", "protocols"))


def _is_path(name: str) -> bool:
  return name.endswith(".py") or os.sep in name or (os.altsep is not None and os.altsep in name)


def _config_module(name: str):
  """The module of a built-in config name, or of a config file path."""
  if _is_path(name):
    path = os.path.abspath(os.path.expanduser(name))
    if not os.path.isfile(path):
      raise FileNotFoundError(f"config file {name!r} not found")
    spec = importlib.util.spec_from_file_location(f"jaxrobust_user_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      raise ValueError(f"config file {name!r} defines no get_config() (it should return a config dict, "
                       "e.g. jaxrobust.configs.base.base_config() with changes)")
    return module
  names = config_names()
  if name not in names:
    raise ValueError(f"unknown config {name!r}{nearest(name, names)}; available: {', '.join(names)}; "
                     "or pass the path of a .py file defining get_config()")
  return importlib.import_module(f"jaxrobust.configs.{name}")


def load_config(name: str, overrides=()) -> dict:
  """A validated config: ``name`` is a built-in config or a path to a ``.py`` file with ``get_config()``."""
  cfg = _config_module(name).get_config()
  cfg = apply_overrides(cfg, overrides)
  cfg.setdefault("config_name", name)
  validate_config(cfg)
  return cfg


def _parse_value(text: str):
  if text.strip().lower() in ("nan", "inf", "+inf", "-inf"):  # numbers literal_eval does not read
    return float(text)
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(cfg: dict, overrides) -> dict:
  """Returns a copy of cfg with each ``a.b.c=value`` applied. A key that is not declared (``KEYS``) is
  refused naming the nearest valid one; model / method keys are checked against their factories by
  ``validate_config``."""
  cfg = copy.deepcopy(cfg)
  for item in overrides or ():
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key.sub=value")
    path, value = item.split("=", 1)
    path = path.strip()
    if not value.strip():
      raise ValueError(f"override {item!r} has no value: write {path}=VALUE (or {path}=None to unset it)")
    keys = path.split(".")
    if keys[0] not in SECTIONS and keys[0] not in KEYS:
      raise unknown_key_error(path, [*KEYS, *SECTIONS])
    node = cfg
    for depth, k in enumerate(keys[:-1]):
      if not isinstance(node.get(k), dict):
        raise ValueError(f"override {item!r}: {'.'.join(keys[:depth + 1])!r} is not a config section")
      node = node[k]
    # Keys inside a section are declared; deeper keys (inside an attack spec) and open sections are free.
    if len(keys) == 2 and keys[0] not in OPEN_SECTIONS and path not in KEYS:
      raise unknown_key_error(path, [k for k in KEYS if k.startswith(keys[0] + ".")])
    node[keys[-1]] = _parse_value(value)
    if path == "model.name":
      _drop_other_model_keys(cfg["model"], item)
  return cfg


def _drop_other_model_keys(model: dict, item: str) -> None:
  """``model.name=OTHER`` switches the architecture: the config's keys for its old model that OTHER does
  not take (e.g. quickstart_digits' ``conv_padding`` under ``model.name=resnet20``) are dropped, with a
  warning naming them, as ``--method`` does for method hyper-parameters. Keys OTHER takes are kept."""
  import warnings
  from jaxrobust.models import MODEL_NAMES, model_keywords
  from jaxrobust.models.external import is_factory_path
  if model["name"] not in MODEL_NAMES and not is_factory_path(model["name"]):
    return  # validate_config names the valid models
  takes = set(model_keywords(model["name"]))
  dropped = sorted(k for k in model if k != "name" and k not in takes)
  for k in dropped:
    del model[k]
  if dropped:
    warnings.warn(f"{item}: dropped model keys {dropped}, which {model['name']!r} does not take", stacklevel=3)
