"""Training methods by name: ``get_method(name, **hparams) -> Method``.

Each method module declares ``REGISTRY: dict[str, factory]``; ``factory(**hparams)`` takes the
method's hyper-parameters as keyword arguments and returns the configured ``Method`` (its losses,
training attack, state, and the batches it trains on). The Trainer, the configs and the CLI only
talk to this module. Names are lower case; '-' and '_' are interchangeable in lookups.
"""

from __future__ import annotations

import inspect
from typing import Callable

from jaxrobust import registries
from jaxrobust.methods.base import Method

MethodFactory = Callable[..., Method]

# Every module that contributes methods; each must import and declare REGISTRY.
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
    "jaxrobust.methods.wrm",
    "jaxrobust.methods.alp",
    "jaxrobust.methods.fat",
    "jaxrobust.methods.adap",
    "jaxrobust.methods.adr",
    "jaxrobust.methods.ascl",
    "jaxrobust.methods.ensemble_at",
    "jaxrobust.methods.cce",
    "jaxrobust.methods.ensemble_baselines",
)

# The threat model of a config: what ``switch_method`` carries over to another method.
THREAT_KEYS = ("eps", "step_size", "steps", "norm")


def _entry(mod_name: str, name: str, factory) -> MethodFactory:
  if not callable(factory):
    raise TypeError(f"{mod_name}.REGISTRY[{name!r}] must be a factory returning a Method; got {factory!r}")
  return factory


def _collect() -> dict[str, MethodFactory]:
  return registries.collect(_METHOD_MODULES, "method", _entry)


def method_names() -> list[str]:
  return sorted(_collect())


def method_factory(name: str) -> MethodFactory:
  """The factory registered as ``name``; unknown names raise ValueError naming the valid ones."""
  return registries.lookup(_collect(), name, "method")


def get_method(name: str, **hparams) -> Method:
  """The configured Method; unknown names raise ValueError listing the valid ones."""
  return method_factory(name)(**hparams)


def switch_method(section: dict, name: str) -> tuple[dict, list[str]]:
  """``jaxrobust train --method NAME``: a method section for NAME from another method's section.

  Keeps the threat model (eps, step_size, steps, norm) where NAME's factory takes it; every other
  hyper-parameter of NAME starts at its default (set them with method.KEY=VALUE overrides). Returns
  (new section, names of the dropped hyper-parameters).
  """
  params = inspect.signature(method_factory(name)).parameters
  key = registries.canonical(name)
  named = {k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  if key == section.get("name"):
    return dict(section), []
  kept = {k: v for k, v in section.items() if k in THREAT_KEYS and k in named}
  dropped = sorted(k for k in section if k != "name" and k not in kept)
  return {"name": key, **kept}, dropped
