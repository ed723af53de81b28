"""What every attack needs around the model: wrappers, objectives, input checks, starts.

* Model wrappers: ``as_partial`` makes a logits function a pytree that can be passed *into*
  ``jax.jit`` (so compiled programs are reused across calls), ``model_with_key`` gives
  deterministic and randomised models one ``(x, key)`` signature, ``num_classes`` reads K from
  the output shape without running the model.
* Objectives: ``loss_and_grad`` closes a per-example attack loss (``losses.AttackLoss``) over the
  model, computing the clean reference logits once when the loss declares it needs them;
  ``fooled`` is the success test; ``top_k_targets`` the targets of APGD-T / FAB-T.
* Input checks (``validate``, ``linf_or_l2``, ``check_num_classes``, ``check_n_target_classes``)
  run on concrete values at the call, never inside a compiled loop.
* ``random_init`` (PGD's starts) and ``resolve_unroll`` (the ``lax.fori_loop`` unroll factor).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.per_example import fold_keys, per_example
from jaxrobust.types import Array, LogitsFn

INITS = ("uniform", "normal", "none")


# ----------------------------------------------------------------------------------------
# Model wrappers
# ----------------------------------------------------------------------------------------

def as_partial(logits_fn) -> jax.tree_util.Partial:
  """Wraps a callable so it can be passed *into* ``jax.jit`` as a pytree argument.

  A ``Partial(apply_fn, params)`` carries params as traced leaves; a bare function becomes a leaf-free pytree
  whose identity keys the compilation cache.
  """
  if isinstance(logits_fn, jax.tree_util.Partial):
    return logits_fn
  return jax.tree_util.Partial(logits_fn)


def model_with_key(logits_fn, randomized: bool):
  """(x, key) -> logits; the key is ignored for deterministic models."""
  if randomized:
    return lambda xa, k: logits_fn(xa, k)
  return lambda xa, k: logits_fn(xa)


def num_classes(logits_fn, x, randomized: bool = False) -> int:
  """K from the output shape, without running the model (``jax.eval_shape``)."""
  threat.check_nonempty(x)
  if randomized:
    out = jax.eval_shape(logits_fn, x, jax.random.PRNGKey(0))
  else:
    out = jax.eval_shape(logits_fn, x)
  if len(out.shape) != 2:
    raise ValueError(f"attacks expect logits of shape (batch, classes); got {out.shape}")
  return int(out.shape[1])


# ----------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------

def check_logits(logits: Array, y: Array) -> None:
  """Trace-time check of the logits' shape and (when y is concrete) of the label range.

  (B, K) logits give K classes, single-logit (B,) / (B, 1) heads give 2.
  """
  if logits.ndim not in (1, 2) or logits.shape[0] != y.shape[0]:
    raise ValueError(f"logits_fn must return logits of shape (batch, classes) or (batch,) for batch {y.shape[0]}; "
                     f"got shape {logits.shape}")
  k = 2 if logits.ndim == 1 or logits.shape[1] == 1 else logits.shape[1]
  with jax.ensure_compile_time_eval():  # a concrete y is checked even while the loop is being traced
    threat.check_labels(y, y.shape[0], k)


def loss_and_grad(logits_fn: LogitsFn, loss, x: Array, y: Array, sign: float = 1.0):
  """Returns ``(grad_fn, objective)``: ``grad_fn(xa) -> (g, (per_example_loss, logits))`` for
  ``sign * sum_i L_i`` and the objective itself.

  ``loss`` is a name, a ``losses.AttackLoss`` or ``loss(logits, y, ref_logits) -> (B,)``
  (``losses.get_attack_loss``); reference (clean) logits are computed once from ``x`` when the loss
  needs them. The reported per-example loss is unsigned.
  """
  attack_loss = losses_lib.get_attack_loss(loss)
  ref_logits = jax.lax.stop_gradient(logits_fn(x)) if attack_loss.needs_reference else None

  def objective(xa):
    logits = logits_fn(xa)
    check_logits(logits, y)
    per_ex = attack_loss(logits, y, ref_logits)
    return sign * jnp.sum(per_ex), (per_ex, logits)

  return jax.grad(objective, has_aux=True), objective


def keyed_loss_and_grad(model, loss, x: Array, y: Array, sign: float = 1.0):
  """``loss_and_grad`` for a randomised model ``model(x, keys) -> logits``: ``grad_fn(xa, keys)`` and
  ``objective(xa, keys)``. A loss that needs the clean logits reads ``model(x, keys)``, the same draw as xa."""
  attack_loss = losses_lib.get_attack_loss(loss)

  def objective(xa, keys):
    logits = model(xa, keys)
    check_logits(logits, y)
    ref = jax.lax.stop_gradient(model(x, keys)) if attack_loss.needs_reference else None
    per_ex = attack_loss(logits, y, ref)
    return sign * jnp.sum(per_ex), (per_ex, logits)

  return jax.grad(objective, has_aux=True), objective


def eot_gradient(grad_fn, xa: Array, keys: Array, draws: int, first: int = 0):
  """The mean of ``grad_fn(xa, fold_keys(keys, first + e))`` over e < draws (Expectation over Transformation);
  returns (g, (per_example_loss, logits)) with the loss and logits of the last draw (as APGD's EoT). One draw
  is the plain call, so EoT with one draw of a deterministic model is bit-identical to no EoT."""
  if draws == 1:
    return grad_fn(xa, fold_keys(keys, first))

  def body(e, acc):
    g_sum, _ = acc
    g, aux = grad_fn(xa, fold_keys(keys, first + e))
    return g_sum + g, aux

  _, aux0 = jax.eval_shape(grad_fn, xa, keys)
  init = (jnp.zeros_like(xa), jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), aux0))
  g_sum, aux = jax.lax.fori_loop(0, draws, body, init)
  return g_sum / float(draws), aux


def fooled(logits: Array, y: Array, targeted: bool) -> Array:
  """(B,) bool: misclassified (untargeted) or predicted as the target y (targeted)."""
  hit = losses_lib.is_correct(logits, y)
  return hit if targeted else ~hit


def top_k_targets(clean_logits: Array, n_target_classes: int) -> Array:
  """Targets of APGD-T / FAB-T: (n_target_classes, B), row c-2 = the c-th largest clean logit, c = 2..n+1.

  Same as the AutoAttack reference's ``logits.sort(dim=1)[1][:, -c]`` (ties broken by the stable ascending sort).
  """
  order = jnp.argsort(clean_logits, axis=1, stable=True)  # ascending, like torch.sort
  k = clean_logits.shape[1]
  return jnp.stack([order[:, k - c] for c in range(2, n_target_classes + 2)], axis=0).astype(jnp.int32)


# ----------------------------------------------------------------------------------------
# Input checks: concrete values only (tracers skip the value checks)
# ----------------------------------------------------------------------------------------

def validate(x: Array, y: Array, num_classes: int | None = None, **nonneg) -> None:
  """Entry checks: a non-empty batch of finite float images in [0, 1] with a batch axis, integer (B,) labels
  (in [0, num_classes) when given), every ``nonneg`` value (eps, step sizes, ...) >= 0 and scalar or (B,).

  Value checks (NaN / Inf pixels, pixel and label ranges) need concrete arrays: an attack called on traced
  values (inside a caller's ``jax.jit``, or the evaluator's compiled step, whose dataset is checked at its
  entry) checks dtypes and shapes only, so it stays traceable and costs nothing in the compiled program."""
  with jax.ensure_compile_time_eval():
    threat.check_images(x)
    y_shape = getattr(y, "shape", None)
    if y_shape is not None and len(y_shape) == 1 and y_shape[0] != x.shape[0]:
      raise ValueError(f"x (shape {x.shape}) and y (shape {y_shape}) disagree on the batch size; x needs a leading "
                       f"batch axis, (batch, height, width, channels): for one image use x[None] and y[None]")
    threat.check_labels(y, x.shape[0], num_classes)
    for name, v in nonneg.items():
      if v is not None:
        threat.check_eps(v, x.shape[0], name=name)


def linf_or_l2(norm, what: str, norms: tuple[str, ...] = ("linf", "l2")) -> str:
  """The canonical norm name, which must be one of ``norms`` (default 'linf' or 'l2'; APGD, FAB and AutoAttack
  also take 'l1')."""
  norm = threat.canonical_norm(norm)
  if norm not in norms:
    raise ValueError(f"{what} supports {' and '.join(repr(n) for n in norms)}; got {norm!r}")
  return norm


def check_counts(what: str, **counts) -> None:
  """Every count (iterations, restarts, ...) is an integer >= 1: zero iterations of APGD or FAB has no
  iterate to return, so it is refused here rather than failing inside the compiled loop."""
  for name, n in counts.items():
    if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)) or n != int(n) or n < 1:
      raise ValueError(f"{what}: {name} must be an integer >= 1; got {n!r}")


def check_run_indices(what: str, run, x, n_runs: int) -> None:
  """(B,) integer run indices, one per row of x, each in [0, n_runs) (concrete values only; traced ones pass):
  an index past the last run would silently take a clipped target."""
  shape, dtype = np.shape(run), getattr(run, "dtype", np.asarray(run).dtype)
  if shape != (x.shape[0],) or not np.issubdtype(dtype, np.integer):
    raise ValueError(f"{what}: run must be (B,) = ({x.shape[0]},) integers, one run index per row; "
                     f"got shape {shape}, dtype {dtype}")
  if not isinstance(run, jax.core.Tracer) and getattr(run, "is_fully_addressable", True):
    r = np.asarray(run)
    if r.size and (r.min() < 0 or r.max() >= n_runs):
      raise ValueError(f"{what}: run indices must lie in [0, {n_runs}) (targets x restarts); got "
                       f"{int(r.min())}..{int(r.max())}")


def check_num_classes(k: int, min_classes: int, what: str) -> None:
  if k < min_classes:
    raise ValueError(f"{what} needs at least {min_classes} classes; the model outputs {k} logits")


def check_n_target_classes(n_target_classes: int, k: int, what: str) -> None:
  if not 1 <= n_target_classes <= k - 1:
    raise ValueError(f"{what}: n_target_classes must lie in [1, K-1] = [1, {k - 1}]; got {n_target_classes}")


def prepare_linf_or_l2(logits_fn, x, y, eps, norm, attack: str, min_classes: int, what: str | None = None,
                       randomized: bool = False, norms: tuple[str, ...] = ("linf", "l2")):
  """The entry of APGD, FAB and Square: the norm (one of ``norms``), the inputs and K >= min_classes
  (``what`` names the attack in that message; default ``attack``). Returns (norm, eps (B,), K)."""
  norm = linf_or_l2(norm, attack, norms)
  k = num_classes(logits_fn, x, randomized)
  validate(x, y, k, eps=eps)
  check_num_classes(k, min_classes, what or attack)
  return norm, per_example(eps, x), k


# ----------------------------------------------------------------------------------------
# Loops and starts
# ----------------------------------------------------------------------------------------

def resolve_unroll(unroll, steps: int) -> int:
  """None -> 1: a rolled ``lax.fori_loop``. With ``models.conv`` the rolled loop runs as fast as
  the unrolled one on CPU (BENCHMARKS.md), compiles in constant time and keeps one step's
  memory; True -> full unroll; an int -> that unroll factor."""
  if unroll is None:
    unroll = 1
  n = steps if unroll is True else int(unroll)
  return max(1, min(n, max(steps, 1)))


def random_init(keys, x: Array, eps, norm, init: str, init_scale: float = 0.001) -> Array:
  """Per-example start: 'uniform' (Madry et al. 2018; ``threat.random_start`` per example), 'normal'
  (x + init_scale N(0, I), unclipped, as TRADES, Zhang et al. 2019) or 'none' (x). keys: (B,) keys."""
  if init not in INITS:
    raise ValueError(f"unknown PGD init {init!r}; expected one of {INITS}")
  if init == "none":
    return x
  if init == "normal":
    return jax.vmap(lambda k, xi: xi + init_scale * jax.random.normal(k, xi.shape, xi.dtype))(keys, x)
  eps_b = per_example(eps, x)
  return jax.vmap(lambda k, xi, ei: threat.random_start(k, xi[None], ei, norm)[0])(keys, x, eps_b)
