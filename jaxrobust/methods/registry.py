"""Training methods by name: ``get_method(name, **hparams) -> Method``.

Modules listed here expose ``REGISTRY = {name: factory}``; the CLI only reads this module.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from jaxrobust.methods.base import Method

_METHOD_MODULES = (
    "jaxrobust.methods.standard",
    "jaxrobust.methods.pgd_at",
    "jaxrobust.methods.trades",
    "jaxrobust.methods.mart",
    "jaxrobust.methods.gairat",
    "jaxrobust.methods.mail",
    "jaxrobust.methods.spat",
    "jaxrobust.methods.awp",
    "jaxrobust.methods.udr",
    "jaxrobust.methods.alp",
    "jaxrobust.methods.fat",
    "jaxrobust.methods.adap",
)

# The threat model of a config: what ``switch_method`` carries over to another method.
THREAT_KEYS = ("eps", "step_size", "steps", "norm")


def _collect() -> dict[str, Callable[..., Method]]:
  from jaxrobust.methods.pgd_at import make_pgd_at
  from jaxrobust.methods.standard import make_standard
  from jaxrobust.methods.trades import make_trades
  out = {"standard": make_standard, "pgd_at": make_pgd_at, "trades": make_trades}
  for mod_name in _METHOD_MODULES:
    try:
      mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
      if e.name == mod_name:
        continue
      raise
    for name, factory in getattr(mod, "REGISTRY", {}).items():
      if name in out and out[name] is not factory:
        raise RuntimeError(f"method name {name!r} registered twice")
      out[name] = factory
  return out


def method_names() -> list[str]:
  return sorted(_collect())


def get_method(name: str, **hparams) -> Method:
  registry = _collect()
  key = name.lower().replace("-", "_")
  if key not in registry:
    raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(registry))}")
  return registry[key](**hparams)


def switch_method(section: dict, name: str) -> tuple[dict, list[str]]:
  """``jaxrobust train --method NAME``: a method section for NAME from another method's section.

  Keeps the threat model (eps, step_size, steps, norm) where NAME's factory takes it; every other
  hyper-parameter of NAME starts at its default (set them with method.KEY=VALUE overrides). Returns
  (new section, names of the dropped hyper-parameters).
  """
  registry = _collect()
  key = name.lower().replace("-", "_")
  if key not in registry:
    raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(registry))}")
  params = inspect.signature(registry[key]).parameters
  named = {k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  if key == section.get("name"):
    return dict(section), []
  kept = {k: v for k, v in section.items() if k in THREAT_KEYS and k in named}
  dropped = sorted(k for k in section if k != "name" and k not in kept)
  return {"name": key, **kept}, dropped
