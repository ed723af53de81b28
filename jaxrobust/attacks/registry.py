"""Attacks by name: ``get_attack(name, **config) -> attack(logits_fn, x, y, key) -> x_adv``.

Each attack module declares ``REGISTRY: dict[str, AttackInfo]``: the factory that takes the
attack's configuration (eps, steps, ...) as keyword arguments and returns the configured pure
attack, and what a caller needs to know about it without running it (threat models, white or
black box, whether the configured attack can be traced inside ``jax.jit``). The evaluator and
the CLI only talk to this module.

Targeted modes: every attack whose options include ``targeted`` also takes ``target`` ('random',
'least_likely', 'most_likely_wrong' or ``fn(logits, y) -> targets``; ``jaxrobust.attacks.targets``), e.g.
``get_attack('pgd', eps=0.03, target='least_likely')``: the configured attack picks the targets from the
clean logits and runs with ``targeted=True``. Attacks that search their own targets (APGD-T, FAB-T, mPGD,
AutoAttack) declare why in ``AttackInfo.own_targets`` and refuse ``target``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from jaxrobust import registries
from jaxrobust.attacks import targets as targets_lib
from jaxrobust.types import Array, LogitsFn

AttackFn = Callable[[LogitsFn, Array, Array, Array], Array]

# Every module that contributes attacks; each must import.
_ATTACK_MODULES = (
    "jaxrobust.attacks.pgd",
    "jaxrobust.attacks.fgsm",
    "jaxrobust.attacks.mim",
    "jaxrobust.attacks.transfer_family",
    "jaxrobust.attacks.cw",
    "jaxrobust.attacks.lm_pgd",
    "jaxrobust.attacks.apgd",
    "jaxrobust.attacks.fab",
    "jaxrobust.attacks.square",
    "jaxrobust.attacks.spsa",
    "jaxrobust.attacks.deepfool",
    "jaxrobust.attacks.ead",
    "jaxrobust.attacks.autoattack",
    "jaxrobust.attacks.fmn",
    "jaxrobust.attacks.ddn",
    "jaxrobust.attacks.brendel_bethge",
    "jaxrobust.attacks.multi_targeted",
    "jaxrobust.attacks.eot",
    "jaxrobust.attacks.universal",
    "jaxrobust.attacks.moo",
)
MODEL_OUTPUTS = ("logits", "member_logits")


@dataclasses.dataclass(frozen=True)
class AttackInfo:
  """One registry entry.

  factory: ``factory(**config) -> attack(logits_fn, x, y, key) -> x_adv``.
  norms: the threat models the attack supports ('linf', 'l2', 'l1').
  box: 'white' (uses input gradients) or 'black' (model outputs only).
  jittable: the configured attack can run inside ``jax.jit``; False for a cascade with host-side
    control (AutoAttack), which the evaluator calls directly with a ``jax.tree_util.Partial`` model.
  summary: one line for listings.
  forwards_to: the attack functions a factory passes its remaining keyword options (``**kw``) on to,
    so that ``attack_parameters`` can list them and ``get_attack`` refuse a misspelt one.
  fixed: options the factory sets itself (e.g. BIM's ``init``), which a caller may not pass.
  min_norm: a minimum-norm attack (FMN, DDN): its output is the smallest adversarial it found (x where none),
    eps is optional (then a point farther than eps is returned as x), and the evaluator can record the
    per-point norms ||x_adv - x|| for robust accuracy at many eps from one run (spec key ``eps_curve``).
  own_targets: for an attack that picks its own target classes (APGD-T, FAB-T, mPGD, AutoAttack), why it
    refuses the ``target`` option (the message of that refusal); empty otherwise.
  model_output: what the attack's ``logits_fn`` must return: 'logits' (B, K) (every attack but the ensemble
    ones), or 'member_logits' (M, B, K), the logits of each of M ensemble members, for attacks whose tasks are
    the members (``moo_ens``); ``target=`` then picks targets from the mean-probability ensemble.
  compacts: called outside ``jax.jit``, the attack re-gathers the points it still attacks between compiled
    chunks, so its cost follows the still-robust count (Square); the evaluator then calls it eagerly.
  """
  factory: Callable[..., AttackFn]
  norms: tuple[str, ...] = ("linf",)
  box: str = "white"
  jittable: bool = True
  summary: str = ""
  name: str = ""
  forwards_to: tuple[Callable, ...] = ()
  fixed: tuple[str, ...] = ()
  min_norm: bool = False
  own_targets: str = ""
  model_output: str = "logits"
  compacts: bool = False

  def __post_init__(self):
    if self.box not in ("white", "black"):
      raise ValueError(f"AttackInfo.box must be 'white' or 'black'; got {self.box!r}")
    if self.model_output not in MODEL_OUTPUTS:
      raise ValueError(f"AttackInfo.model_output must be one of {MODEL_OUTPUTS}; got {self.model_output!r}")


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

  # The factory's own signature is the attack's options (the standard inspect protocol), so that
  # attack_parameters, help() and the CLI show them.
  options = [q for q in list(signature.parameters.values())[4:] if q.name not in fixed]
  factory.__signature__ = inspect.Signature(options)
  factory.__doc__ = attack_fn.__doc__
  factory.__wrapped__ = attack_fn
  return factory


_CALL_ARGS = ("logits_fn", "x", "y", "key")


def _options(fn: Callable) -> list[inspect.Parameter]:
  """Keyword options of a factory or attack function (not the call arguments, not ``**kw``)."""
  return [q for q in inspect.signature(fn).parameters.values()
          if q.kind in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD) and q.name not in _CALL_ARGS]


TARGET = "target"
_TARGET_PARAMETER = inspect.Parameter(TARGET, inspect.Parameter.KEYWORD_ONLY, default=None)


def attack_parameters(name: str) -> dict[str, inspect.Parameter]:
  """The options ``get_attack(name, **config)`` accepts, with their defaults (``inspect.Parameter``;
  ``default is inspect.Parameter.empty`` for a required one), in declaration order. An attack with a
  ``targeted`` option also takes ``target`` (listed right after it; ``jaxrobust.attacks.targets``)."""
  info = attack_info(name)
  out: dict[str, inspect.Parameter] = {}
  for fn in (info.factory, *info.forwards_to):  # the factory's own defaults win
    for q in _options(fn):
      if q.name not in info.fixed:
        out.setdefault(q.name, q)
  if "targeted" in out and TARGET not in out and not info.own_targets:
    items = list(out.items())
    i = [k for k, _ in items].index("targeted") + 1
    out = dict(items[:i] + [(TARGET, _TARGET_PARAMETER)] + items[i:])
  return out


def attack_option_docs(name: str) -> dict[str, str]:
  """{option: meaning} for every option of ``attack_parameters(name)`` (``attacks.option_docs``)."""
  from jaxrobust.attacks.option_docs import option_docs
  return option_docs(attack_info(name), list(attack_parameters(name)))


def _check_target(name: str, config: dict, params: dict) -> None:
  """``target`` only for attacks with a ``targeted`` mode, with a known selector, and not with targeted=False."""
  target = config.get(TARGET)
  if target is None:
    return
  info = attack_info(name)
  if TARGET not in params:
    if info.own_targets:
      raise ValueError(f"attack {info.name!r} does not take target={targets_lib.target_name(target)!r}: "
                       f"{info.own_targets}")
    takes = [n for n in attack_names() if TARGET in attack_parameters(n)]
    raise ValueError(f"attack {info.name!r} has no targeted mode (no 'targeted' option), so it cannot take "
                     f"target=...; attacks that do: {', '.join(takes)}")
  targets_lib.check_target(target)
  if config.get("targeted") is False:
    raise ValueError(f"attack {info.name!r}: target={targets_lib.target_name(target)!r} runs the attack targeted; "
                     "drop targeted=False")


def check_attack_config(name: str, config: dict) -> None:
  """Refuses an option ``name`` does not take (naming the nearest one) or a missing required one."""
  params = attack_parameters(name)
  canonical = attack_info(name).name
  _check_target(name, config, params)
  for k in config:
    if k not in params:
      near = registries.nearest(k, list(params))
      hint = f" (did you mean {near!r}?)" if near else ""
      raise ValueError(f"attack {canonical!r} has no parameter {k!r}{hint}; its parameters: {', '.join(params)} "
                       f"(jaxrobust list --attack {canonical})")
  for k, v in config.items():  # a number given as text (e.g. eps='abc' from a hand-written spec)
    if isinstance(v, str) and (k == "eps" or isinstance(params[k].default, (int, float))):
      raise ValueError(f"attack {canonical!r}: {k} must be a number; got {v!r}")
  missing = [k for k, q in params.items() if q.default is inspect.Parameter.empty and k not in config]
  if missing:
    raise ValueError(f"attack {canonical!r} needs {', '.join(missing)}; e.g. get_attack({canonical!r}, "
                     + ", ".join(f"{k}=..." for k in missing) + ")")


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
  """The configured pure attack ``attack(logits_fn, x, y, key) -> x_adv``.

  An unknown name, an option the attack does not take, or a missing required option (e.g. eps)
  raises ValueError naming the valid ones; ``attack_parameters(name)`` lists the options with their
  defaults, ``attack_option_docs(name)`` what each means (``jaxrobust list --attack NAME`` prints both).

  ``target`` (attacks with a ``targeted`` option): 'random', 'least_likely', 'most_likely_wrong' or
  ``fn(logits, y) -> targets`` returns a ``targets.TargetedAttack``: it picks the targets from the clean
  logits and runs the attack with ``targeted=True`` and ``y = targets`` (``target=None``: untargeted as usual).
  """
  check_attack_config(name, config)
  target = config.pop(TARGET, None)
  if target is None:
    return attack_info(name).factory(**config)
  config["targeted"] = True
  info = attack_info(name)
  return targets_lib.TargetedAttack(info.factory(**config), target, members=info.model_output == "member_logits")
