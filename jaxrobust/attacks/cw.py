"""Carlini-Wagner attacks: CW-L2 (optimisation in tanh space) and CW-Linf (PGD on the CW margin).

CW-L2 (Carlini & Wagner 2017; torchattacks ``CW``):

    x'(w) = (tanh(w) + 1) / 2,   w_0 = atanh(2x - 1)
    minimise_w  sum_i ||x'_i - x_i||_2^2 + c_i f(z(x'_i)),   f(z) = max(z_y - max_{j != y} z_j, -kappa)

with Adam (lr 0.01). Per example it keeps the misclassified iterate with the smallest squared L2
(``best_L2``); an example with none is returned unchanged, so "robust" means no adversarial
iterate was found. Two modes for c:

* ``binary_search_steps=1`` (default): c is fixed, one run of ``steps`` Adam steps; this is exactly
  torchattacks (no eps ball, no search) as used in the UDR evaluation.
* ``binary_search_steps=S > 1``: Carlini's original outer search, per example: start at c, after each
  run set upper = min(upper, c) on success, else lower = max(lower, c); then c = (lower + upper) / 2
  once an upper bound exists, else c = 10 c. Adam and w restart each run; the smallest-L2
  adversarial over all runs is kept.

Early abort (``abort_early``): every max(steps // 10, 1) steps compare the cost with the last
checked value and stop if it went up. 'batch' uses the summed batch cost (torchattacks; this
couples the examples of a batch), 'example' does the same per example (examples stay
independent), None never stops. "Stopping" freezes best_L2 / x_adv; the loop keeps its static
length. Pixels exactly at 0 or 1 map to w = +-inf and never move (torchattacks does the same).

CW-Linf (``cw_linf``; FAT/MAIL/SPAT ``cwloss``): PGD-Linf maximising
-max(z_y - max_{j != y} z_j + kappa, 0) with kappa = 50.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, fooled, resolve_unroll, validate
from jaxrobust.attacks.per_example import per_example, select
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

_BIG = 1e10  # torchattacks' initial best_L2 and Carlini's "no upper bound yet"


class CWResult(NamedTuple):
  """x_adv (B, ...): best adversarial, or x where none was found; l2 (B,): its squared L2
  distance ||x_adv - x||_2^2 (inf where none); success (B,) bool."""
  x_adv: Array
  l2: Array
  success: Array


def _atanh(z: Array) -> Array:
  # torchattacks' formula (not jnp.arctanh) so that tanh(w_0) rounds the same way.
  return 0.5 * jnp.log((1 + z) / (1 - z))


def cw_l2_search(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, c=1.0, kappa: float = 0.0,
                 steps: int = 50, lr: float = 0.01, binary_search_steps: int = 1,
                 targeted: bool = False, abort_early: str | None = "batch",
                 unroll: int | bool | None = None) -> CWResult:
  """CW-L2 returning a ``CWResult``. x (B, ...) in [0, 1]; y (B,) labels (targets when targeted);
  c scalar or (B,) (the initial c when binary_search_steps > 1); key is unused."""
  validate(x, y, c=c, kappa=kappa, lr=lr)
  if abort_early not in ("batch", "example", None, False):
    raise ValueError(f"abort_early must be 'batch', 'example' or None; got {abort_early!r}")
  if steps < 0 or binary_search_steps < 1:
    raise ValueError(f"need steps >= 0 and binary_search_steps >= 1; got {steps}, {binary_search_steps}")
  b = x.shape[0]
  w0 = _atanh(jnp.clip(2 * x - 1, -1, 1))
  opt = optax.adam(lr)
  period = max(steps // 10, 1)
  per_ex_abort = abort_early == "example"

  def objective(w, const):
    adv = 0.5 * (jnp.tanh(w) + 1)
    l2 = jnp.sum(((adv - x) ** 2).reshape(b, -1), axis=1)
    logits = logits_fn(adv)
    check_logits(logits, y)
    cost = l2 + const * losses_lib.cw_f(logits, y, kappa, targeted)
    return jnp.sum(cost), (adv, l2, logits, cost)

  grad_fn = jax.grad(objective, has_aux=True)

  def run(const):
    """One optimisation at fixed per-example const -> (best_l2, best_adv)."""
    def step(t, carry):
      w, st, best_l2, best_adv, prev, stopped = carry
      g, (adv, l2, logits, cost) = grad_fn(w, const)
      upd, st = opt.update(g, st, w)
      w = optax.apply_updates(w, upd)
      # Keep the iterate that fooled the model with the smallest L2 (before this step's update).
      better = fooled(logits, y, targeted) & (best_l2 > l2) & ~stopped
      best_l2 = jnp.where(better, l2, best_l2)
      best_adv = select(better, adv, best_adv)
      if abort_early:
        c_now = cost if per_ex_abort else jnp.sum(cost)
        check = (t % period == 0) & ~stopped
        stopped = stopped | (check & (c_now > prev))
        prev = jnp.where(check, c_now, prev)
      return w, st, best_l2, best_adv, prev, stopped

    shape = (b,) if per_ex_abort else ()
    carry = (w0, opt.init(w0), jnp.full((b,), _BIG, x.dtype), x,
             jnp.full(shape, _BIG, x.dtype), jnp.zeros(shape, bool))
    out = jax.lax.fori_loop(0, steps, step, carry, unroll=resolve_unroll(unroll, steps))
    return out[2], out[3]

  const = per_example(c, x)
  if binary_search_steps == 1:
    best_l2, best_adv = run(const)
  else:
    def outer(_, carry):
      const, lower, upper, o_l2, o_adv = carry
      l2, adv = run(const)
      succ = l2 < _BIG
      better = l2 < o_l2
      o_l2 = jnp.where(better, l2, o_l2)
      o_adv = select(better, adv, o_adv)
      upper = jnp.where(succ, jnp.minimum(upper, const), upper)
      lower = jnp.where(succ, lower, jnp.maximum(lower, const))
      const = jnp.where(upper < 1e9, (lower + upper) / 2, const * 10)
      return const, lower, upper, o_l2, o_adv

    init = (const, jnp.zeros_like(const), jnp.full_like(const, _BIG), jnp.full_like(const, _BIG), x)
    _, _, _, best_l2, best_adv = jax.lax.fori_loop(0, binary_search_steps, outer, init)
  success = best_l2 < _BIG
  return CWResult(best_adv, jnp.where(success, best_l2, jnp.inf), success)


def cw_l2(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps=None, **kw) -> Array:
  """CW-L2 (see ``cw_l2_search`` for the options); returns x_adv like x.

  eps (optional, scalar or (B,)): keep an adversarial only if ||x_adv - x||_2 <= eps, else return
  x, so that accuracy on the output is the CW robust accuracy at radius eps.
  """
  res = cw_l2_search(logits_fn, x, y, key, **kw)
  if eps is None:
    return res.x_adv
  threat.check_eps(eps, x.shape[0])
  ok = res.success & (jnp.sqrt(jnp.where(res.success, res.l2, 0.0)) <= per_example(eps, x))
  return select(ok, res.x_adv, x)


def cw_linf(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size=None, steps: int = 20,
            kappa: float = 50.0, init: str = "uniform", **pgd_kw) -> Array:
  """CW-Linf: PGD-Linf on L = -max(z_y - max_{j != y} z_j + kappa, 0); step_size defaults to
  2.5 eps / steps. Other keywords go to ``pgd`` (restarts, early_stop, targeted, ...)."""
  if step_size is None:
    step_size = 2.5 * jnp.asarray(eps) / max(steps, 1)
  return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, norm="linf",
             loss=losses_lib.make_cw_margin(kappa), init=init, **pgd_kw)


REGISTRY = {
    "cw_l2": AttackInfo(configured(cw_l2), norms=("l2",), forwards_to=(cw_l2_search,), summary="Carlini & Wagner 2017 L2 attack (Adam on tanh space)"),
    "cw_linf": AttackInfo(configured(cw_linf), summary="PGD on the CW margin loss (Carlini & Wagner 2017)"),
}
