"""Any JAX model as a jaxrobust model: a Flax linen module, a Flax NNX module or a pure function.

What a model must provide
-------------------------
``x`` is a float batch (B, H, W, C) in [0, 1] pixel space (normalise inside the model, so attacks
work in pixel space). A model is one of

* a ``flax.linen.Module``: called as ``module.apply(variables, x, **keywords)``; its variables are
  initialised by jaxrobust from the run's seed;
* a ``flax.nnx.Module`` instance (flax's default API): called as ``model(x, **keywords)``; its
  current weights are the starting point (``nnx.Param``), ``nnx.BatchStat`` variables are its BN state;
* a pure function with its params, ``(apply, params)`` or ``PureModel(apply, params)``: called as
  ``apply(params, x, **keywords)``; BN-free (params are the only state).

and returns logits (B, K). Two keywords are optional; the model declares them by naming them in its
``__call__`` (or ``apply``) signature, and only declared ones are passed:

* ``train: bool``: train mode (BN batch statistics, dropout). An NNX model without it is switched
  with flax's ``model.train()`` / ``model.eval()`` instead; a linen module or function without it
  runs the same in both modes.
* ``return_features: bool``: when True the model returns ``(logits, features)`` (or a
  ``ModelOutput``), features (B, D) its latent (penultimate) representation. Methods that train on
  latents (ADR, Bui et al. 2021; ASCL, Bui et al. 2021) and the R-DIV metric need it, and refuse a
  model without it.

BN state lives in linen's ``'batch_stats'`` collection (``nn.BatchNorm``) or in ``nnx.BatchStat``
variables (``nnx.BatchNorm``); train steps update it, evaluation uses the running averages.
Dropout draws from the ``'dropout'`` rng stream (linen ``make_rng('dropout')``; an NNX model's rng
streams are reseeded from the train step's key every call), so a run stays reproducible.

``as_module(model)`` wraps any of the three in ``ExternalModel``, a linen module with the calling
convention of every jaxrobust model (``apply(variables, x, train=False, return_features=False)``),
so the Trainer, checkpoints, ``runs.load_run`` and the evaluator take it unchanged.

A factory ``"package.module:function"`` names a model in a config (``model.name``) or on the command
line (``jaxrobust train --model ...``). The function returns one of the three; it receives
``num_classes``, ``input_shape`` (H, W, C) and ``seed`` where its signature names them (the config's
data section and seed fix them), and the config's other ``model.*`` keys as keyword arguments.
The module must be importable (on ``PYTHONPATH``) wherever the run is trained or loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Callable, Tuple

import jax
import flax.linen as nn
from flax import nnx

from jaxrobust.models.common import check_image_batch
from jaxrobust.models.fast_gradients import fast_input_gradients
from jaxrobust.types import Array, ModelOutput, PyTree

# Factory arguments jaxrobust fills in itself (not config keys).
FACTORY_ARGUMENTS = ("num_classes", "input_shape", "seed")


@dataclasses.dataclass(frozen=True, eq=False)
class PureModel:
  """A pure function model: ``apply(params, x) -> logits (B, K)`` (BN-free) and its params pytree."""
  apply: Callable[..., Any]
  params: PyTree


class _Held:
  """Carries a Python object (NNX graph, function, arrays) as a linen field, compared by identity."""

  def __init__(self, value):
    self.value = value


class ExternalModel(nn.Module):
  """x (B, H, W, C) in [0, 1] -> logits (B, K), or ModelOutput(logits, features (B, D) or None).

  kind: 'linen', 'nnx' or 'function'. wrapped: the linen module (a child, its variables under
  'wrapped'), or the NNX split / the function and params (variables under 'model').
  takes_train / has_features: whether the wrapped call takes ``train`` / ``return_features``.
  """
  wrapped: Any
  kind: str
  takes_train: bool
  has_features: bool

  @nn.compact
  def __call__(self, x: Array, train: bool = False, return_features: bool = False):
    check_image_batch(x)
    keywords = {}
    if self.takes_train:
      keywords["train"] = train
    if return_features and self.has_features:
      keywords["return_features"] = True
    if self.kind == "linen":
      out = self.wrapped(x, **keywords)
    elif self.kind == "function":
      apply, template = self.wrapped.value
      params = self.param("model", lambda _: _named(template))
      # Its convolutions get the library's fast input gradients (training attacks too); values are unchanged.
      out = fast_input_gradients(apply)(_unnamed(template, params), x, **keywords)
    else:
      out = self._call_nnx(x, train, keywords)
    return _output(out, return_features and self.has_features, return_features)

  def _call_nnx(self, x, train, keywords):
    graphdef, params0, stats0, rest0 = self.wrapped.value
    params = _unnamed(params0, self.param("model", lambda _: _named(params0)))
    stats = self.variable("batch_stats", "model", lambda: _named(stats0)) if jax.tree.leaves(stats0) else None
    # Fresh Variables every call: the held state must never see tracers or train-mode updates.
    model = nnx.merge(graphdef, params, stats0 if stats is None else _unnamed(stats0, stats.value),
                      jax.tree.map(lambda a: a, rest0))
    if not self.takes_train:  # flax's own switch of Dropout.deterministic / BatchNorm.use_running_average
      if train:
        model.train()
      else:
        model.eval()
    if train and self.has_rng("dropout"):
      streams = sorted({s.tag for _, s in nnx.iter_graph(model) if isinstance(s, nnx.RngStream)})
      key = self.make_rng("dropout")
      nnx.reseed(model, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(streams)})
    out = model(x, **keywords)
    if stats is not None and train and self.is_mutable_collection("batch_stats"):
      stats.value = _named(nnx.state(model, nnx.BatchStat))
    return out


def _output(out, with_features: bool, return_features: bool):
  if with_features:
    if isinstance(out, ModelOutput):
      return out
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
      raise TypeError("a model whose call takes return_features must return (logits, features) when it is True; "
                      f"got {type(out).__name__}")
    return ModelOutput(out[0], out[1])
  if isinstance(out, (tuple, list)):
    raise TypeError(f"the model returned a {type(out).__name__}; it must return logits (B, K) (features only "
                    "when called with return_features=True)")
  if out.ndim != 2:
    raise ValueError(f"the model returned shape {tuple(out.shape)}; it must return logits (B, K)")
  return ModelOutput(out, None) if return_features else out


def _path_name(entry) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _names(tree) -> list:
  """Each leaf's path as a tuple of strings (an NNX Variable's trailing '.value' dropped)."""
  out = []
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = tuple(_path_name(p) for p in path)
    if len(names) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and names[-1] == "value":
      names = names[:-1]
    out.append(names or ("value",))
  return out


def _named(tree) -> dict:
  """A pytree's leaves as a nested dict with string keys (what checkpoints store for any pytree)."""
  nested: dict = {}
  for names, leaf in zip(_names(tree), jax.tree.leaves(tree)):
    node = nested
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = leaf
  return nested


def _unnamed(template, nested: dict):
  """Inverse of ``_named``: the leaves of ``nested`` in ``template``'s structure (new containers)."""
  def lookup(names):
    node = nested
    for name in names:
      node = node[name]
    return node
  return jax.tree.unflatten(jax.tree.structure(template), [lookup(n) for n in _names(template)])


def _takes(fn, name: str) -> bool:
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def as_module(model) -> nn.Module:
  """Any model of the protocol above -> an ``ExternalModel`` (a library model is returned as it is).

  model: a linen Module, an NNX Module, a ``PureModel`` or a tuple ``(apply, params)``.
  """
  from jaxrobust.models.classifier import ImageClassifier
  from jaxrobust.models.ensemble import Ensemble
  if isinstance(model, (ImageClassifier, Ensemble, ExternalModel)):
    return model
  if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
    model = PureModel(*model)
  if isinstance(model, nn.Module):
    call = type(model).__call__
    return ExternalModel(wrapped=model, kind="linen", takes_train=_takes(call, "train"),
                         has_features=_takes(call, "return_features"))
  if isinstance(model, nnx.Module):
    call = type(model).__call__
    return ExternalModel(wrapped=_Held(nnx.split(model, nnx.Param, nnx.BatchStat, ...)), kind="nnx",
                         takes_train=_takes(call, "train"), has_features=_takes(call, "return_features"))
  if isinstance(model, PureModel):
    if not callable(model.apply):
      raise TypeError(f"PureModel.apply must be a function apply(params, x) -> logits; got {model.apply!r}")
    return ExternalModel(wrapped=_Held((model.apply, model.params)), kind="function",
                         takes_train=_takes(model.apply, "train"),
                         has_features=_takes(model.apply, "return_features"))
  raise TypeError(f"not a model: {type(model).__name__}; give a flax.linen Module, a flax.nnx Module, or a pure "
                  "function with its params as (apply, params) / PureModel(apply, params)")


def has_features(module) -> bool:
  """Whether ``module.apply(..., return_features=True)`` gives latent features (every library model does)."""
  return not isinstance(module, ExternalModel) or module.has_features


def is_factory_path(name) -> bool:
  """Whether a config's model name is a factory path 'package.module:function' (not a library model)."""
  return isinstance(name, str) and ":" in name


def load_factory(path: str) -> Callable[..., Any]:
  """The function a factory path 'package.module:function' names; a clear error when it is not there."""
  module_name, _, attr = path.partition(":")
  if not module_name or not attr:
    raise ValueError(f"model factory {path!r} must read 'package.module:function'")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"model factory {path!r}: cannot import {module_name!r} ({e}); put its folder on PYTHONPATH") from e
  fn = module
  for part in attr.split("."):
    if not hasattr(fn, part):
      raise ValueError(f"model factory {path!r}: module {module_name!r} has no {attr!r}")
    fn = getattr(fn, part)
  if not callable(fn):
    raise ValueError(f"model factory {path!r} is not callable")
  return fn


def factory_keywords(path: str) -> Tuple[str, ...]:
  """The config keys (``model.*`` besides name) the factory takes: its parameters, less those jaxrobust fills."""
  params = inspect.signature(load_factory(path)).parameters.values()
  return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.name not in FACTORY_ARGUMENTS)


def from_factory(path: str, *, num_classes: int, input_shape, seed: int = 0, **kwargs) -> nn.Module:
  """``as_module(factory(**kwargs, + num_classes / input_shape / seed where it names them))``."""
  factory = load_factory(path)
  given = {"num_classes": int(num_classes), "input_shape": tuple(input_shape), "seed": int(seed)}
  kwargs.update({k: v for k, v in given.items() if _takes(factory, k)})
  return as_module(factory(**kwargs))
