"""Attacks by name: ``get_attack(name, **config) -> attack(logits_fn, x, y, key) -> x_adv``.

Each attack module declares ``REGISTRY: dict[str, AttackInfo]``: the factory that takes the
attack's configuration (eps, steps, ...) as keyword arguments and returns the configured pure
attack, and what a caller needs to know about it without running it (threat models, white or
black box, whether the configured attack can be traced inside ``jax.jit``). The evaluator and
the CLI only talk to this module.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from jaxrobust import registries
from jaxrobust.types import Array, LogitsFn

AttackFn = Callable[[LogitsFn, Array, Array, Array], Array]

# Every module that contributes attacks; each must import.
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


@dataclasses.dataclass(frozen=True)
class AttackInfo:
  """One registry entry.

  factory: ``factory(**config) -> attack(logits_fn, x, y, key) -> x_adv``.
  norms: the threat models the attack supports ('linf', 'l2', 'l1').
  box: 'white' (uses input gradients) or 'black' (model outputs only).
  jittable: the configured attack can run inside ``jax.jit``; False for a cascade with host-side
    control (AutoAttack), which the evaluator calls directly with a ``jax.tree_util.Partial`` model.
  summary: one line for listings.
  """
  factory: Callable[..., AttackFn]
  norms: tuple[str, ...] = ("linf",)
  box: str = "white"
  jittable: bool = True
  summary: str = ""
  name: str = ""

  def __post_init__(self):
    if self.box not in ("white", "black"):
      raise ValueError(f"AttackInfo.box must be 'white' or 'black'; got {self.box!r}")


def configured(attack_fn: Callable[..., Array], **fixed) -> Callable[..., AttackFn]:
  """The factory of an attack function ``attack_fn(logits_fn, x, y, key, **options)``.

  ``configured(fn, **fixed)(**config)`` returns ``attack(logits_fn, x, y, key) = fn(logits_fn, x, y, key,
  **fixed, **config)``; the options are checked against ``fn``'s signature when the attack is
  configured, so a misspelt or missing option fails there rather than at the first call.
  """
  signature = inspect.signature(attack_fn)

  def factory(**config):
    signature.bind(None, None, None, None, **fixed, **config)

    def attack(logits_fn, x, y, key):
      return attack_fn(logits_fn, x, y, key, **fixed, **config)
    return attack
  return factory


def _entry(mod_name: str, name: str, info) -> AttackInfo:
  if not isinstance(info, AttackInfo):
    raise TypeError(f"{mod_name}.REGISTRY[{name!r}] must be an AttackInfo; got {type(info).__name__}")
  return dataclasses.replace(info, name=name)


def _collect() -> dict[str, AttackInfo]:
  return registries.collect(_ATTACK_MODULES, "attack", _entry)


def attack_names() -> list[str]:
  return sorted(_collect())


def attack_info(name: str) -> AttackInfo:
  """The registry entry of ``name``; unknown names raise ValueError naming the valid ones."""
  return registries.lookup(_collect(), name, "attack")


def get_attack(name: str, **config) -> AttackFn:
  """Returns the configured attack; unknown names raise ValueError listing the valid ones."""
  return attack_info(name).factory(**config)
