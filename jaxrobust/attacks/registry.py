"""Attacks by name: ``get_attack(name, **config) -> attack(logits_fn, x, y, key) -> x_adv``.

Each attack module defines ``REGISTRY: dict[str, Callable[..., AttackFn]]`` mapping names to
factories that take the attack's configuration (eps, steps, ...) as keyword arguments and
return the configured pure attack. The evaluator and the CLI only talk to this module.
"""

from __future__ import annotations

import importlib
from typing import Callable

from jaxrobust.types import Array, LogitsFn

AttackFn = Callable[[LogitsFn, Array, Array, Array], Array]

# Modules that contribute attacks; a module that fails to import is an error, not a skip.
_ATTACK_MODULES = (
    "jaxrobust.attacks.pgd",
    "jaxrobust.attacks.fgsm",
    "jaxrobust.attacks.mim",
    "jaxrobust.attacks.cw",
    "jaxrobust.attacks.lm_pgd",
    "jaxrobust.attacks.apgd",
    "jaxrobust.attacks.fab",
    "jaxrobust.attacks.square",
    "jaxrobust.attacks.autoattack",
)


def _collect() -> dict[str, Callable[..., AttackFn]]:
  out: dict[str, Callable[..., AttackFn]] = {}
  for mod_name in _ATTACK_MODULES:
    try:
      mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
      if e.name == mod_name:  # module not written yet
        continue
      raise
    for name, factory in getattr(mod, "REGISTRY", {}).items():
      if name in out:
        raise RuntimeError(f"attack name {name!r} registered twice")
      out[name] = factory
  return out


def attack_names() -> list[str]:
  return sorted(_collect())


def get_attack(name: str, **config) -> AttackFn:
  """Returns the configured attack; unknown names raise ValueError listing the valid ones."""
  registry = _collect()
  key = name.lower().replace("-", "_")
  if key not in registry:
    raise ValueError(f"unknown attack {name!r}; available: {', '.join(sorted(registry))}")
  return registry[key](**config)
