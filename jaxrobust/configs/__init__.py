"""Declarative run configs: one module per protocol, each with ``get_config() -> dict``.

A config is a nested dict (data, model, method, optim, train, eval). ``load_config(name,
overrides)`` returns a validated deep copy with ``key.sub=value`` overrides applied; values
are parsed as Python literals (numbers, tuples, lists, None, True/False) or kept as strings.
Every config module's docstring gives the command that runs it.
"""

from __future__ import annotations

import ast
import copy
import importlib
import pkgutil

from jaxrobust.configs.base import base_config, validate_config

__all__ = ["base_config", "config_names", "load_config", "apply_overrides", "validate_config"]


def config_names() -> list[str]:
  import jaxrobust.configs as pkg
  return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("base",))


def load_config(name: str, overrides=()) -> dict:
  names = config_names()
  if name not in names:
    raise ValueError(f"unknown config {name!r}; available: {', '.join(names)}")
  cfg = importlib.import_module(f"jaxrobust.configs.{name}").get_config()
  cfg = apply_overrides(cfg, overrides)
  cfg.setdefault("config_name", name)
  validate_config(cfg)
  return cfg


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(cfg: dict, overrides) -> dict:
  """Returns a copy of cfg with each ``a.b.c=value`` applied. Unknown top-level sections and
  unknown keys in closed sections raise, so a typo never silently does nothing."""
  cfg = copy.deepcopy(cfg)
  for item in overrides or ():
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key.sub=value")
    path, value = item.split("=", 1)
    keys = path.strip().split(".")
    node = cfg
    for k in keys[:-1]:
      if k not in node or not isinstance(node[k], dict):
        raise ValueError(f"override {item!r}: no config section {k!r} (sections: {sorted(node)})")
      node = node[k]
    leaf = keys[-1]
    open_section = node is cfg.get("method") or node is cfg.get("model")
    if leaf not in node and not open_section:
      raise ValueError(f"override {item!r}: unknown key {leaf!r} in this section (keys: {sorted(node)})")
    node[leaf] = _parse_value(value)
  return cfg
