"""EAD: elastic-net attacks (Chen et al. 2018), L1, with the EN and L1 decision rules.

Per example, for a constant c (binary-searched), minimise over x' in [0, 1]^d

    c f(x') + ||x' - x||_2^2 + beta ||x' - x||_1,     f(x') = max(z_y(x') - max_{j != y} z_j(x'), -kappa)

(targeted: f = max(max_{j != t} z_j - z_t, -kappa)) by ISTA / FISTA: a gradient step on the smooth part
c f + ||.||_2^2 at the slack point y_k, then the box-constrained soft threshold S_beta around x:

    g      = grad_{y_k} (c f(y_k) + ||y_k - x||_2^2)
    u      = y_k - lr_k g,             lr_k = lr (1 - k / T)^(1/2)      (polynomial decay, power 0.5)
    x_k+1  = S(u):  min(u - beta, 1) where u - x > beta;  x where |u - x| <= beta;  max(u + beta, 0) where u - x < -beta
    y_k+1  = x_k+1 + k' / (k' + 3) (x_k+1 - x_k),  k' = k + 1           (FISTA; ISTA: y_k+1 = x_k+1)

Every iterate x_k+1 that is adversarial (with confidence kappa) is a candidate; the decision rule picks the
one kept: 'EN' the smallest ||.||_2^2 + beta ||.||_1, 'L1' the smallest ||.||_1 (torchattacks ``EADEN`` /
``EADL1``). After each run of T = ``max_iterations`` steps, per example: success -> upper = min(upper, c),
failure -> lower = max(lower, c); c = (lower + upper) / 2 once upper < 1e9, else 10 c. With
``binary_search_steps`` >= 10 the last run uses c = upper (the reference's "repeat").

Defaults are torchattacks 3.5's (kappa 0, lr 0.01, 9 search steps, 100 iterations, initial c 1e-3, beta
1e-3; the paper and cleverhans use 1000 iterations, cleverhans beta 1e-2). Choices where the references
differ:

* ``warm_start``: False (default) restarts every run from x_0 = y_0 = x (the paper's Algorithm 1, the
  authors' code and cleverhans); True carries x_k, y_k from one run to the next (torchattacks).
* ``abort_early``: every max(T // 10, 1) steps compare the objective at x_k with the last checked value and
  stop the run if it went up (> 0.999999 of it, torchattacks; cleverhans 0.9999). 'batch' compares the batch
  sum (torchattacks, couples the examples of a batch), 'example' (default) each example's own objective (the
  examples stay independent), None never stops. A stopped example keeps its iterate; the run's loop ends once
  every example has stopped.
* f uses the true other-class maximum; torchattacks' max(onehot * z) reads the masked entries as 0 and is
  wrong when z_y < 0 (as in its CW, see ``losses.cw_f``).
* The success test adds kappa to z_y (subtracts it from z_t when targeted) per example; torchattacks adds
  it to the columns of every label in the batch (the same when kappa = 0).

What is returned (``EADResult``): the best adversarial iterate over all runs under the decision rule, or
**x unchanged where no run found one**, so a returned point is adversarial (at confidence kappa) or is the
input. ``key`` is unused (deterministic).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, check_num_classes, num_classes, validate
from jaxrobust.attacks.per_example import expand, per_example, select
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

DECISION_RULES = ("EN", "L1")
_BIG = 1e10  # the references' "no distance yet" and "no upper bound yet"


class EADResult(NamedTuple):
  """x_adv (B, ...): best adversarial, or x where none was found; l1 (B,): ||x_adv - x||_1 (inf where none);
  dist (B,): the decision rule's distance of x_adv (inf where none); success (B,) bool."""
  x_adv: Array
  l1: Array
  dist: Array
  success: Array


def shrink(u: Array, x: Array, beta) -> Array:
  """The box-constrained soft threshold S_beta(u) around x (EAD's ISTA projection)."""
  diff = u - x
  return jnp.where(diff > beta, jnp.minimum(u - beta, 1.0), jnp.where(diff < -beta, jnp.maximum(u + beta, 0.0), x))


def ead_search(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, decision_rule: str = "EN", kappa=0.0,
               lr=0.01, binary_search_steps: int = 9, max_iterations: int = 100, abort_early: str | None = "example",
               initial_const=1e-3, beta=1e-3, fista: bool = True, warm_start: bool = False,
               targeted: bool = False) -> EADResult:
  """EAD returning an ``EADResult`` (module docstring). x (B, ...) in [0, 1]; y (B,) labels (targets when
  targeted); initial_const scalar or (B,)."""
  del key
  if decision_rule not in DECISION_RULES:
    raise ValueError(f"EAD decision_rule must be one of {DECISION_RULES}; got {decision_rule!r}")
  if abort_early not in ("batch", "example", None, False):
    raise ValueError(f"abort_early must be 'batch', 'example' or None; got {abort_early!r}")
  if max_iterations < 1 or binary_search_steps < 1:
    raise ValueError(f"need max_iterations >= 1 and binary_search_steps >= 1; got {max_iterations}, "
                     f"{binary_search_steps}")
  k = num_classes(logits_fn, x)
  validate(x, y, k, kappa=kappa, lr=lr, initial_const=initial_const, beta=beta)
  check_num_classes(k, 2, "EAD")
  b = x.shape[0]
  t_max = int(max_iterations)
  period = max(t_max // 10, 1)
  per_ex_abort = abort_early == "example"
  beta = jnp.asarray(beta, x.dtype)
  kappa = jnp.asarray(kappa, x.dtype)
  rows = lambda a: a.reshape(b, -1)

  def smooth(yk, const):  # c f + ||.||_2^2 at the slack point (the part ISTA differentiates)
    logits = logits_fn(yk)
    check_logits(logits, y)
    l2 = jnp.sum(rows(yk - x) ** 2, axis=1)
    return jnp.sum(const * losses_lib.cw_f(logits, y, kappa, targeted) + l2)

  grad_smooth = jax.grad(smooth)

  def adversarial(logits):
    shift = jax.nn.one_hot(y, k, dtype=logits.dtype) * (-kappa if targeted else kappa)
    pred = jnp.argmax(logits + shift, axis=1)
    return pred == y if targeted else pred != y

  def run(const, xk0, yk0, o_best, o_adv):
    """One ISTA / FISTA run at per-example const -> (found (B,), x_k, y_k, o_best, o_adv)."""
    def cond(carry):
      it, stopped = carry[0], carry[3]
      return (it < t_max) & ~jnp.all(stopped)

    def body(carry):
      it, xk, yk, stopped, prev, best, o_best, o_adv = carry
      live = ~stopped if per_ex_abort else jnp.broadcast_to(~stopped, (b,))
      lr_it = lr * jnp.sqrt(1.0 - it.astype(x.dtype) / t_max)
      u = yk - lr_it * grad_smooth(yk, const)
      x_new = shrink(u, x, beta)
      if fista:
        gs = (it + 1).astype(x.dtype)
        y_new = x_new + gs / (gs + 3.0) * (x_new - xk)
      else:
        y_new = x_new
      xk, yk = select(live, x_new, xk), select(live, y_new, yk)
      logits = logits_fn(xk)
      l1 = jnp.sum(jnp.abs(rows(xk - x)), axis=1)
      l2 = jnp.sum(rows(xk - x) ** 2, axis=1)
      obj = const * losses_lib.cw_f(logits, y, kappa, targeted) + l2 + beta * l1
      if abort_early:
        obj = obj if per_ex_abort else jnp.sum(obj)
        check = (it % period == 0) & ~stopped
        abort = check & (obj > prev * 0.999999)
        prev = jnp.where(check & ~abort, obj, prev)
        stopped = stopped | abort
      keep = (~stopped if per_ex_abort else jnp.broadcast_to(~stopped, (b,))) & adversarial(logits)
      cost = l1 if decision_rule == "L1" else l2 + beta * l1
      best = jnp.where(keep & (cost < best), cost, best)
      better = keep & (cost < o_best)
      return (it + 1, xk, yk, stopped, prev, best, jnp.where(better, cost, o_best), select(better, xk, o_adv))

    shape = (b,) if per_ex_abort else ()
    carry = (jnp.int32(0), xk0, yk0, jnp.zeros(shape, bool), jnp.full(shape, 1e6, x.dtype),
             jnp.full((b,), _BIG, x.dtype), o_best, o_adv)
    _, xk, yk, _, _, best, o_best, o_adv = jax.lax.while_loop(cond, body, carry)
    return best < _BIG, xk, yk, o_best, o_adv

  repeat = binary_search_steps >= 10

  def outer(step, carry):
    const, lower, upper, xk, yk, o_best, o_adv = carry
    if repeat:
      const = jnp.where(step == binary_search_steps - 1, upper, const)
    if not warm_start:
      xk, yk = x, x
    found, xk, yk, o_best, o_adv = run(const, xk, yk, o_best, o_adv)
    upper = jnp.where(found, jnp.minimum(upper, const), upper)
    lower = jnp.where(found, lower, jnp.maximum(lower, const))
    const = jnp.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return const, lower, upper, xk, yk, o_best, o_adv

  const = per_example(initial_const, x)
  init = (const, jnp.zeros_like(const), jnp.full_like(const, _BIG), x, x, jnp.full_like(const, _BIG), x)
  o_best, x_adv = jax.lax.fori_loop(0, binary_search_steps, outer, init)[5:]
  success = o_best < _BIG
  l1 = jnp.sum(jnp.abs(rows(x_adv - x)), axis=1)
  return EADResult(x_adv, jnp.where(success, l1, jnp.inf), jnp.where(success, o_best, jnp.inf), success)


def ead(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps=None, **kw) -> Array:
  """EAD (see ``ead_search`` for the options); returns x_adv like x: adversarial, or x.

  eps (optional, scalar or (B,)): keep an adversarial only if ||x_adv - x||_1 <= eps, else return x, so that
  accuracy on the output is EAD's robust accuracy in the L1 ball of radius eps.
  """
  res = ead_search(logits_fn, x, y, key, **kw)
  if eps is None:
    return res.x_adv
  threat.check_eps(eps, x.shape[0])
  return select(res.success & (res.l1 <= per_example(eps, x)), res.x_adv, x)


REGISTRY = {
    "ead": AttackInfo(configured(ead), norms=("l1",), forwards_to=(ead_search,),
                      summary="EAD elastic-net attack, ISTA/FISTA with a binary search over c (Chen et al. 2018)"),
    "ead_l1": AttackInfo(configured(ead, decision_rule="L1"), norms=("l1",), forwards_to=(ead_search,),
                         fixed=("decision_rule",), summary="EAD with the L1 decision rule (torchattacks EADL1)"),
    "ead_en": AttackInfo(configured(ead, decision_rule="EN"), norms=("l1",), forwards_to=(ead_search,),
                         fixed=("decision_rule",), summary="EAD with the EN decision rule (torchattacks EADEN)"),
}
