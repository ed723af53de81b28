"""Attack specs: what the evaluator runs, as plain dicts.

A spec is ``{'name': registry name, 'label': shown name, **config}``, e.g.
``{'name': 'pgd', 'eps': 0.3, 'steps': 20, 'step_size': 0.01}``. The config keys go to
``jaxrobust.attacks.registry.get_attack(name, **config)``; the keys in ``EVALUATOR_KEYS`` are read
by the evaluator itself and apply to any attack:

* ``label``: the report's name for the attack (default: name and config, e.g. 'fgsm eps=0.1').
* ``max_examples``: attack only the first m points of the split (AutoAttack on the first 1000 test
  images, as the MAIL and UDR reference code do).
* ``two_class_logits``: craft on the two-class logits [0, z] of a single-logit model, so that
  softmax([0, z])_1 = sigmoid z and cross-entropy equals BCE: a multi-class attack (APGD-CE) then
  attacks a binary classifier.
* ``source``: a surrogate model ``(apply, variables)`` to craft on; the evaluated model only scores
  the result (a transfer, black-box attack).
* ``step_size_ratio``: the attack's ``step_size`` is ratio * eps, so an eps sweep keeps the step
  proportional and reuses one compiled program (eps is traced).
* ``eps_curve``: a list of radii, for a minimum-norm attack (registry ``AttackInfo.min_norm``: FMN, DDN)
  run without ``eps``: the evaluator records ||x_adv - x||_p per point (p = the spec's ``norm``, else the
  attack's default) and the report gets robust accuracy at every radius from that one run
  (``report['eps_curve'][label]``, ``jaxrobust.evaluate.min_norm_curve``).
* ``member``: craft on member i of an ensemble alone (the evaluator needs a member apply:
  ``RobustEvaluator.for_module``); the evaluated ensemble and every member score the result, which gives
  the transferability table a^(i, j) of Bui et al. 2021 (``ensemble_metrics.EnsembleMembers``).

``target`` is an attack option (it goes to ``get_attack``) that the evaluator also reads: for an attack with a
``targeted`` mode, 'random', 'least_likely', 'most_likely_wrong' or ``fn(logits, y) -> targets``
(``jaxrobust.attacks.targets``) picks the targets from the clean logits of the model the attack crafts on.
Robust accuracy keeps its meaning (robust iff the prediction at x_adv is still the true y); the report adds
``targeted_success[label]``, the rate of prediction == target (``metrics.TargetedSuccess``). A function
target shows in labels and reports by its ``__name__``, e.g. ``'pgd eps=0.03 target=my_targets'``.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.registry import TARGET, attack_info, attack_names, attack_parameters, check_attack_config

EVALUATOR_KEYS = ("name", "label", "max_examples", "two_class_logits", "source", "step_size_ratio", "eps_curve",
                  "member")

# Keys never shown in an automatic label or written to a report: a model is not a setting.
_UNPRINTABLE = ("source",)


def spec_label(spec: dict) -> str:
  """The spec's ``label``, else its name followed by its sorted settings."""
  if "label" in spec:
    return str(spec["label"])
  skip = ("name", "label") + _UNPRINTABLE
  return " ".join([spec["name"]] + [f"{k}={_shown(k, v)}" for k, v in sorted(spec.items()) if k not in skip])


def _shown(key: str, value):
  """A function target by its name (not its address); every other value as is."""
  if key == TARGET and callable(value):
    from jaxrobust.attacks.targets import target_name
    return target_name(value)
  return value


def attack_kwargs(spec: dict) -> dict:
  """The keywords of ``get_attack``: the spec without the evaluator's own keys."""
  return {k: v for k, v in spec.items() if k not in EVALUATOR_KEYS}


def reported(spec: dict, label: str) -> dict:
  """The spec as written to a report: its label set, the surrogate model left out, a function target by name."""
  return {**{k: _shown(k, v) for k, v in spec.items() if k not in _UNPRINTABLE}, "label": label}


def check_attack_options(spec: dict) -> None:
  """The spec's attack exists and takes its options (``step_size_ratio`` stands for ``step_size``):
  checked on the host before any batch runs, naming the nearest valid option."""
  config = attack_kwargs(spec)
  if "step_size_ratio" in spec:
    config["step_size"] = spec["step_size_ratio"]
  check_attack_config(spec["name"], config)


def check_specs(specs: Sequence[dict]) -> list[str]:
  """Validates names, options, eps and sources on the host (eps is traced inside the compiled
  attack); returns the unique labels."""
  for s in specs:
    if "name" not in s:
      raise ValueError(f"attack spec {s} needs a 'name' (one of jaxrobust.attacks.attack_names())")
    check_attack_options(s)
    threat.check_eps(s.get("eps", 0.0), name=f"eps of attack {spec_label(s)!r}")
    if "eps_curve" in s:
      check_eps_curve_spec(s)
    source = s.get("source")
    if source is not None and not (isinstance(source, (tuple, list)) and len(source) == 2 and callable(source[0])):
      raise ValueError(f"'source' of attack {spec_label(s)!r} must be a pair (apply, variables)")
  labels = [spec_label(s) for s in specs]
  if len(set(labels)) != len(labels):
    raise ValueError(f"attack labels must be unique; got {labels}")
  return labels


def curve_norm(spec: dict) -> str:
  """The norm of a spec's perturbations: its ``norm`` option, else the attack's default, else its first norm."""
  if spec.get("norm") is not None:
    return threat.canonical_norm(spec["norm"])
  q = attack_parameters(spec["name"]).get("norm")
  if q is not None and isinstance(q.default, str):
    return threat.canonical_norm(q.default)
  return attack_info(spec["name"]).norms[0]


def check_eps_curve_spec(spec: dict) -> None:
  """``eps_curve`` needs a minimum-norm attack run without eps (its output farther than eps would be x)."""
  from jaxrobust.evaluate.min_norm_curve import check_eps_curve
  label = spec_label(spec)
  info = attack_info(spec["name"])
  if not info.min_norm:
    minimum = [n for n in attack_names() if attack_info(n).min_norm]
    raise ValueError(f"eps_curve of attack {label!r}: {info.name!r} is not a minimum-norm attack, so its "
                     f"perturbation norms say nothing about smaller eps; use one of {minimum}")
  if spec.get("eps") is not None:
    raise ValueError(f"eps_curve of attack {label!r}: leave eps out, the curve needs the unconstrained minimum "
                     "norms (with eps, points farther than eps come back as x)")
  check_eps_curve(spec["eps_curve"], label)


def attack_limits(dataset, specs: Sequence[dict], labels: Sequence[str]) -> dict[str, int]:
  """{label: m} for the specs whose ``max_examples`` m is below the split's size.

  A prefix must see every class of the split: the first m rows of a class-sorted file would measure
  only a few classes (``check_prefix_classes`` refuses them).
  """
  from jaxrobust.data.dataset import check_prefix_classes
  limits = {}
  for label, s in zip(labels, specs):
    m = s.get("max_examples")
    if m is None:
      continue
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
      raise ValueError(f"max_examples of attack {label!r} must be a positive int; got {m!r}")
    if m < len(dataset):
      check_prefix_classes(dataset, m, f"max_examples={m} of attack {label!r}")
      limits[label] = m
  return limits


def two_class_logits(z):
  """(B,) or (B, 1) single logit -> (B, 2) logits [0, z]: softmax(.)_1 = sigmoid z."""
  z = z.reshape(z.shape[0])
  return jnp.stack([jnp.zeros_like(z), z], axis=1)
