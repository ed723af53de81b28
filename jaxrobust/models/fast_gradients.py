"""Any JAX model's convolutions and max-pools given the library's fast input gradients on CPU.

``fast_input_gradients(fn)`` returns a function with the same values as ``fn`` whose input gradients run
fast inside attack loops. It traces ``fn`` to a jaxpr and evaluates it again, replacing

* every ``lax.conv_general_dilated`` (2-D, any dimension numbers, no dilation, no feature / batch groups)
  with ``models.conv.conv2d`` between transposes to NHWC / HWIO: the same forward value, and an input
  gradient written with a materialised flipped kernel, which XLA:CPU runs on its fast path inside
  ``while`` bodies (``lax.conv_general_dilated``'s own transpose rule runs 2-6x slower there; see
  ``models.conv``);
* every ``lax.reduce_window`` max whose window equals its stride, without padding or dilation
  (``flax.linen.max_pool``, ``nnx.max_pool``), with a reshape + max, whose gradient XLA:CPU runs about
  8x faster than select-and-scatter. At a tie inside a window the gradient is split between the tied
  entries instead of going to the first; everything else is equal up to float rounding.

So a model written with stock ``flax.linen.Conv``, Flax NNX ``Conv``, Equinox or raw ``lax`` calls gets the
attack speed of the library's own networks. Operations inside control flow or custom-derivative bodies
(``lax.scan`` / ``while`` / ``cond``, ``jax.checkpoint``, ``custom_vjp``) are left as they are; ``jit``
bodies are rewritten. When ``fn`` has nothing to replace, the wrapper calls ``fn`` itself, so the library's
own models (whose convolutions already are ``conv2d``) compile to exactly the program they had.
"""

from __future__ import annotations

import functools
import weakref
from typing import Callable

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxrobust.models.conv import conv2d

_CALLS = ("pjit", "jit", "closed_call", "core_call")
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _nhwc_conv(eqn, x, w):
  p = eqn.params
  lhs, rhs, out = p["dimension_numbers"]
  if (len(lhs) != 4 or tuple(p["lhs_dilation"]) != (1, 1) or tuple(p["rhs_dilation"]) != (1, 1)
      or p["feature_group_count"] != 1 or p["batch_group_count"] != 1
      or min(min(pad) for pad in p["padding"]) < 0
      or (p.get("preferred_element_type") not in (None, x.dtype)) or x.dtype != w.dtype):
    return None
  x_nhwc = jnp.transpose(x, (lhs[0], lhs[2], lhs[3], lhs[1]))
  w_hwio = jnp.transpose(w, (rhs[2], rhs[3], rhs[1], rhs[0]))
  y = conv2d(x_nhwc, w_hwio, p["window_strides"], p["padding"])  # (batch, s0, s1, feature)
  perm = [0] * 4
  for logical, position in zip((0, 3, 1, 2), out):
    perm[position] = logical
  return jnp.transpose(y, perm)


def _reshape_max(eqn, x):
  p = eqn.params
  window, strides = tuple(p["window_dimensions"]), tuple(p["window_strides"])
  if (window != strides or any(pad != (0, 0) for pad in map(tuple, p["padding"]))
      or any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))):
    return None
  crop = tuple(slice(0, (n // w) * w) for n, w in zip(x.shape, window))
  shape = [s for n, w in zip(x.shape, window) for s in (n // w, w)]
  return jnp.max(x[crop].reshape(shape), axis=tuple(range(1, 2 * x.ndim, 2)))


_RULES = {"conv_general_dilated": lambda eqn, x, w: _nhwc_conv(eqn, x, w),
          "reduce_window_max": _reshape_max}


def _has_target(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in _RULES:
      return True
    if eqn.primitive.name in _CALLS and _has_target(_inner(eqn).jaxpr):
      return True
  return False


def _inner(eqn) -> jcore.ClosedJaxpr:
  inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
  return inner if isinstance(inner, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(inner, ())


def _evaluate(jaxpr, consts, args):
  env = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name, outvals = eqn.primitive.name, None
    if name in _RULES:
      outvals = _RULES[name](eqn, *invals)
      outvals = None if outvals is None else [outvals]
    elif name in _CALLS:
      inner = _inner(eqn)
      outvals = _evaluate(inner.jaxpr, inner.consts, invals)
    if outvals is None:
      params = eqn.primitive.get_bind_params(eqn.params)
      subfuns, params = params if isinstance(params, tuple) else ((), params)  # older jax: (subfuns, params)
      with eqn.ctx.manager:
        outvals = eqn.primitive.bind(*subfuns, *invals, **params)
      outvals = outvals if eqn.primitive.multiple_results else [outvals]
    env.update(zip(eqn.outvars, outvals))
  return [read(v) for v in jaxpr.outvars]


def fast_input_gradients(fn: Callable) -> Callable:
  """``fn(*args) -> pytree`` with the same values and fast input gradients on CPU (module docstring).

  Off CPU (GPU / TPU backends have no such slow path) the wrapper calls ``fn`` unchanged. Wrapping is
  memoised per function object, so ``jit`` caches keyed on the function keep working.
  """
  if not callable(fn):
    raise TypeError(f"fast_input_gradients needs a function (e.g. logits_fn(x) or apply(variables, x)); got "
                    f"{type(fn).__name__}")
  if getattr(fn, "_jaxrobust_fast", False):
    return fn
  try:
    return _CACHE[fn]
  except (KeyError, TypeError):
    pass

  @functools.wraps(fn)
  def wrapped(*args, **static):  # keyword arguments are static settings (e.g. train=False)
    if jax.default_backend() != "cpu":
      return fn(*args, **static)
    closed, out_shape = jax.make_jaxpr(functools.partial(fn, **static), return_shape=True)(*args)
    if not _has_target(closed.jaxpr):
      return fn(*args, **static)
    flat = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(out_shape), flat)

  wrapped._jaxrobust_fast = True
  try:
    _CACHE[fn] = wrapped
  except TypeError:  # not weak-referenceable (e.g. a builtin): no memo
    pass
  return wrapped
