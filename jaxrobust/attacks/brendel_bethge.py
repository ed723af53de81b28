"""The Brendel & Bethge attack (Brendel, Rauber, Kuemmerer, Ustyuzhaninov & Bethge 2019), Linf and L2.

A minimum-norm attack that walks along the decision boundary from an adversarial start. A port of foolbox
3.3.4's ``LinfinityBrendelBethgeAttack`` / ``L2BrendelBethgeAttack``, with the start the papers that report
B&B use: a PGD adversarial (PGD-20, step eps/2, random start). Per example, with the margin
l(z) = z_y - max_{j != y} z_j (targeted: max_{j != t} z_j - z_t; l < 0 iff adversarial):

    x_1  = the PGD point;  a point PGD did not make adversarial has no start and stays x (not broken)
    x    = binary search (binary_search_steps) on the segment / Linf-shrink from x_0 (clean) to x_1 for
           the point closest to x_0 that is still adversarial
    for k = 1..steps:
      record x as the best if l(x) < 0 and ||x - x_0||_p < ||best - x_0||_p
      b    = grad l(x) (k = 1);  b <- (1 - momentum) grad l(x) + momentum b     (boundary normal, smoothed)
      lr   <- lr lr_decay  every max(1, steps // lr_num_decay) steps;  r = lr D   (D: input size, box [0, 1])
      c    = -overshoot l(x) if l(x) > 0 else -(2 - overshoot) l(x)            (aim slightly past the boundary)
      x   <- x + delta,  delta = argmin ||x_0 - x - delta||_p  s.t.  b.delta = c,  0 <= x + delta <= 1,
                                                                   ||delta||_2 <= r        (the paper's eq. 2)
           and where that is infeasible (the linearised boundary is out of reach):
             delta = argmax -b.delta  s.t.  ||delta||_2 <= r,  0 <= x + delta <= 1

The trust-region step is solved as in foolbox (and the paper's section 3): for L2 by foolbox's active-set
iteration (at most 20 rounds, clamping the coordinates that leave the box); for Linf by bisection on the
radius e of a box x_0 +- e (20 halvings of [0, 1]) whose feasibility is the least-L2 step
delta(lambda) = clip(lambda b / 2) onto b.delta = c (a safeguarded Newton search on lambda, relative
tolerance 1e-4) within the trust region; the fallback step by bisection on the multiplier mu of
delta(mu) = clip(-b / (2 mu)), ||delta||_2 = r. Each solver is a ``lax.while_loop`` / ``fori_loop``
vmapped over the batch: one XLA program, per-example masks.

Re-attacking the survivors (Bui et al. 2021, CCE's evaluation): with ``repeats`` R > 1 the whole attack
(PGD start with fresh per-example keys, binary search, B&B steps) runs again on the points still unbroken
(no adversarial found; with eps: none within eps), up to R runs; a point keeps the smallest adversarial over
its runs, so its distance never increases.

Output (as FMN / DDN, ``fmn.min_norm_output``): the smallest adversarial found, x where none; ``verify``
re-checks the returned points with one more forward pass; with ``eps`` a point farther than eps is returned
as x, so accuracy on the output is robust accuracy at eps. Robust accuracy at many eps from one run:
``jaxrobust.evaluate.min_norm_curve`` (spec key ``eps_curve``).

Deviations from foolbox 3.3.4:

* Trust region. foolbox uses r = lr * (batch size * D) (``np.prod(x.shape)`` includes the batch axis), so a
  point's step depends on how many points share its batch; here r = lr * D per example (batch size changes
  nothing). foolbox's steps on a batch of n are ours with lr multiplied by n (what the cross-check does).
* Points without an adversarial start: foolbox asserts every start is adversarial; here they are masked
  (never moved, returned as x).
* The fallback step for an adversarial iterate (c > 0) whose boundary is out of reach: foolbox maximises a
  dual whose gradient has an extra term for c > 0 and then steps along -b; here the step along -b has the
  trust-region length (as foolbox's for c < 0).
* float32 solvers (foolbox: float64); the Newton search on lambda stops after 100 iterations (foolbox: no
  cap); the iterate is clipped to the box after each step (foolbox's float32 cast can leave it 1 ulp out).
* The L1 and L0 versions (foolbox: BFGS-B / Nelder-Mead solvers) are not ported.
"""

from __future__ import annotations

import inspect
from typing import Callable

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.fmn import MinNormResult, check_min_norm_args, min_norm_output
from jaxrobust.attacks.model_calls import check_logits, fooled, resolve_unroll
from jaxrobust.attacks.per_example import example_keys, expand, fold_keys, per_example, select
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

NORMS = ("linf", "l2")
TINY = 1e-10             # foolbox's EPS in the solvers
LAMBDA_ITERS = 100       # Newton search on lambda (converges in a few; the cap bounds the while_loop)
LINF_RADIUS_HALVINGS = 20
L2_ACTIVE_SET_ROUNDS = 20
MU_HALVINGS = 30         # geometric bisection of mu over a factor 1e8


# ----------------------------------------------------------------------------------------
# Trust-region solvers: one example, flat vectors (D,), box [0, 1]
# ----------------------------------------------------------------------------------------

def _boundary_lambda(b, lo, hi, c, lam0):
  """Least-L2 step onto b.delta = c within lo <= delta <= hi: delta = clip(lambda b / 2, lo, hi), lambda by a
  safeguarded Newton search from lam0 (foolbox ``LinfOptimizer.fun``). Returns (lambda, delta, solvable):
  solvable = c lies in [min, max] of b.delta over the box (else lambda = lam0)."""
  max_c = jnp.sum(jnp.where(b > 0, b * hi, b * lo))
  min_c = jnp.sum(jnp.where(b > 0, b * lo, b * hi))
  solvable = (c <= max_c) & (c >= min_c)

  def cond(s):
    return ~s[4] & (s[3] < LAMBDA_ITERS)

  def body(s):
    lam, lam_min, lam_max, k, _ = s
    raw = lam * b / 2
    free = (raw >= lo) & (raw <= hi)
    cc = jnp.dot(b, jnp.clip(raw, lo, hi))
    done = (0.9999 * jnp.abs(c) - TINY < jnp.abs(cc)) & (jnp.abs(cc) < 1.0001 * jnp.abs(c) + TINY)
    lam_max = jnp.where(cc > c, lam, lam_max)
    lam_min = jnp.where(cc > c, lam_min, lam)
    active = jnp.sum(jnp.where(free, b * b, 0.0))
    middle = (lam_max - lam_min) / 2 + lam_min
    nxt = jnp.where(active == 0, middle, lam + 2 * (c - cc) / (active + TINY))
    span = lam_max - lam_min
    nxt = jnp.where((nxt > lam_max - 0.1 * span) | (nxt < lam_min + 0.1 * span), middle, nxt)
    return jnp.where(done, lam, nxt), lam_min, lam_max, k + 1, done

  big = jnp.asarray(1e10, b.dtype)
  lam = jax.lax.while_loop(cond, body, (lam0, -big, big, 0, ~solvable))[0]
  return lam, jnp.clip(lam * b / 2, lo, hi), solvable


def _linf_distance_step(x0, x, b, c, r):
  """argmin ||x0 - x - delta||_inf s.t. b.delta = c, box, ||delta||_2 <= r (foolbox ``LinfOptimizer``):
  bisection on the radius e in [0, 1]; e is feasible when the least-L2 step onto the boundary inside
  [x0 - e, x0 + e] exists and has ||delta||_2 <= r."""
  lam0 = 2 * c / (jnp.sum(b * b) + TINY)

  def bounds(e):
    return jnp.maximum(x0 - e, 0.0) - x, jnp.minimum(x0 + e, 1.0) - x

  def body(_, s):
    e, e_low, e_high, lam0 = s
    lam, delta, solvable = _boundary_lambda(b, *bounds(e), c, lam0)
    ok = solvable & (jnp.sum(delta * delta) <= r * r)
    e_high = jnp.where(ok, e, e_high)
    e_low = jnp.where(ok, e_low, e)
    return (e_high - e_low) / 2 + e_low, e_low, e_high, jnp.where(ok, lam, lam0)

  one = jnp.ones((), x.dtype)
  _, _, e_high, lam = jax.lax.fori_loop(0, LINF_RADIUS_HALVINGS, body, (one / 2, 0 * one, one, lam0))
  return jnp.clip(lam * b / 2, *bounds(e_high))


def _l2_distance_step(x0, x, b, c, r):
  """argmin ||x0 - x - delta||_2 s.t. b.delta = c, box, ||delta||_2 <= r by foolbox's active-set iteration
  (``L2Optimizer``): the closed-form step on the free coordinates, then the ones that left the box are
  clamped and the budget (c, r) left for the rest is recomputed."""
  dx = x0 - x
  n = x.shape[0]
  zero = jnp.zeros((), x.dtype)

  def cond(s):
    return ~s[-1] & (s[-2] < L2_ACTIVE_SET_ROUNDS)

  def body(s):
    mask, delta, ck, rk, clamp_c, clamp_norm, masked, k, _ = s
    free = ~mask
    bnorm = 1e-8 + jnp.sum(jnp.where(free, b * b, 0.0))
    b_dot_dx = jnp.sum(jnp.where(free, b * dx, 0.0)) / bnorm
    ck_bnorm = ck / bnorm
    boundary_norm = jnp.sum(jnp.where(free, (b * ck_bnorm) ** 2, 0.0))
    joint = dx + b * (ck_bnorm - b_dot_dx)
    descent_norm = jnp.sum(jnp.where(free, (dx - b * b_dot_dx) ** 2, 0.0))
    shrink = jnp.sqrt(jnp.maximum(rk * rk - boundary_norm, 0.0)) / (jnp.sqrt(descent_norm) + 1e-8)
    shrunk = shrink * dx + b * (ck_bnorm - shrink * b_dot_dx)
    step = jnp.where(boundary_norm > rk * rk, b * ck_bnorm,
                     jnp.where(jnp.sum(jnp.where(free, joint ** 2, 0.0)) > rk * rk, shrunk, joint))
    delta = jnp.where(free, step, delta)
    low = free & (x + delta <= 0)
    high = free & ~low & (x + delta >= 1)
    newly = low | high
    delta = jnp.where(low, -x, jnp.where(high, 1 - x, delta))
    clamp_norm = clamp_norm + jnp.sum(jnp.where(newly, delta * delta, 0.0))
    clamp_c = clamp_c + jnp.sum(jnp.where(newly, b * delta, 0.0))
    new = jnp.sum(newly)
    masked = masked + new
    rk = jnp.where(clamp_norm < r * r, jnp.sqrt(jnp.maximum(r * r - clamp_norm, 0.0)), 0.0)
    return (mask | newly, delta, c - clamp_c, rk, clamp_c, clamp_norm, masked, k + 1,
            (new == 0) | (masked == n))

  init = (jnp.zeros((n,), bool), jnp.zeros_like(x), c, r, zero, zero, 0, 0, False)
  return jax.lax.while_loop(cond, body, init)[1]


def _boundary_step(x, b, r):
  """The largest step along -b within the trust region and the box (foolbox
  ``optimize_boundary_s_t_trustregion``): delta(mu) = clip(-b / (2 mu), -x, 1 - x) with ||delta(mu)||_2 = r,
  or the box corner (mu -> 0) when that is shorter than r."""
  corner = jnp.where(b > 0, -x, jnp.where(b < 0, 1 - x, 0.0))

  def delta(mu):
    return jnp.clip(-b / (2 * mu), -x, 1 - x)

  mu_high = jnp.sqrt(jnp.sum(b * b)) / (2 * r) + TINY  # unclipped length r: the solution lies below

  def body(_, s):
    lo, hi = s
    mid = jnp.sqrt(lo * hi)
    inside = jnp.sum(delta(mid) ** 2) <= r * r
    return jnp.where(inside, lo, mid), jnp.where(inside, mid, hi)

  _, mu = jax.lax.fori_loop(0, MU_HALVINGS, body, (mu_high * 1e-8, mu_high))
  return jnp.where(jnp.sum(corner * corner) <= r * r, corner, delta(mu))


def trust_region_step(x0, x, b, c, r, norm: str):
  """One B&B step for one example (foolbox ``Optimizer.solve``): the distance-minimising step onto the
  linearised boundary b.delta = c when it is reachable within the box and the trust region ||delta||_2 <= r,
  else the largest step along -b. x0, x, b: (D,); c, r: scalars."""
  toward = jnp.where(c > 0, b > 0, b <= 0)
  corner = jnp.where(toward, 1 - x, -x)
  reachable = jnp.abs(jnp.dot(b, corner)) >= jnp.abs(c)
  _, to_boundary, _ = _boundary_lambda(b, -x, 1 - x, c, 2 * c / (jnp.sum(b * b) + TINY))
  solvable = reachable & ((jnp.sqrt(jnp.sum(corner * corner)) < r)
                          | (jnp.sqrt(jnp.sum(to_boundary ** 2)) <= r))
  distance_step = _linf_distance_step if norm == "linf" else _l2_distance_step
  return jnp.where(solvable, distance_step(x0, x, b, c, r), _boundary_step(x, b, r))


# ----------------------------------------------------------------------------------------
# The attack
# ----------------------------------------------------------------------------------------

def mid_points(x0: Array, x1: Array, t: Array, norm: str) -> Array:
  """Points between x0 (t = 0) and x1 (t = 1), t (B,): Linf shrinks x1 - x0 to the box +-t, L2 blends."""
  t = expand(t, x0)
  if norm == "linf":
    return x0 + jnp.clip(x1 - x0, -t, t)
  return t * x1 + (1 - t) * x0


def boundary_search(logits_fn: LogitsFn, x: Array, x1: Array, y: Array, norm: str, targeted: bool,
                    steps: int) -> Array:
  """foolbox's start: the point of ``mid_points(x, x1, t)`` with the smallest t in a ``steps``-halving
  bisection of [0, 1] that is still adversarial (x1 is, or the point is x1's end)."""
  b = x.shape[0]

  def body(_, s):
    low, high = s
    t = (low + high) / 2
    adv = fooled(logits_fn(mid_points(x, x1, t, norm)), y, targeted)
    return jnp.where(adv, low, t), jnp.where(adv, t, high)

  _, high = jax.lax.fori_loop(0, steps, body, (jnp.zeros((b,), x.dtype), jnp.ones((b,), x.dtype)))
  return mid_points(x, x1, high, norm)


def _margin_grad(logits_fn: LogitsFn, y: Array, targeted: bool):
  """x -> (grad of the summed margins, per-example margins l (B,)); l < 0 iff adversarial."""
  def objective(xa):
    logits = logits_fn(xa)
    check_logits(logits, y)
    m = losses_lib.margin(logits, y)
    m = -m if targeted else m
    return jnp.sum(m), m
  return jax.grad(objective, has_aux=True)


def bb_run(logits_fn: LogitsFn, x: Array, y: Array, x1: Array, *, norm: str, steps: int, lr: float,
           lr_decay: float, lr_num_decay: int, momentum: float, overshoot: float, binary_search_steps: int,
           targeted: bool = False, unroll=None) -> tuple[Array, Array]:
  """The B&B walk from starting points x1 (B, ...); rows where x1 is not adversarial are left out.
  Returns (best (B, ...), best_norm (B,), +inf where no adversarial was met)."""
  b = x.shape[0]
  start_adv = fooled(logits_fn(x1), y, targeted)
  x1 = select(start_adv, x1, x)
  start = boundary_search(logits_fn, x, x1, y, norm, targeted, binary_search_steps)
  grad_fn = _margin_grad(logits_fn, y, targeted)
  flat = lambda a: a.reshape(b, -1)
  solve = jax.vmap(lambda x0, xa, bn, c, r: trust_region_step(x0, xa, bn, c, r, norm))
  size = flat(x).shape[1]
  interval = max(1, int(steps / lr_num_decay))

  def step(k, carry):  # k = 1..steps as foolbox's loop counter
    xa, best, best_norm, boundary, lr_k = carry
    g, margin = grad_fn(xa)
    d = threat.per_example_norm(xa - x, norm)
    closer = start_adv & (margin < 0) & (d < best_norm)
    best = select(closer, xa, best)
    best_norm = jnp.where(closer, d, best_norm)
    boundary = jnp.where(k == 1, g, (1 - momentum) * g + momentum * boundary)
    lr_k = jnp.where((k + 1) % interval == 0, lr_k * lr_decay, lr_k)
    c = jnp.where(margin > 0, -overshoot * margin, -(2 - overshoot) * margin)
    delta = solve(flat(x), flat(xa), flat(boundary), c, jnp.broadcast_to(lr_k * size, (b,)).astype(x.dtype))
    delta = jnp.where(expand(start_adv, delta), delta, 0.0).reshape(x.shape)
    return threat.clip_box(xa + delta), best, best_norm, boundary, lr_k

  best_norm = jnp.where(start_adv, threat.per_example_norm(x1 - x, norm), jnp.inf)
  init = (start, x1, best_norm, jnp.zeros_like(x), jnp.asarray(lr, x.dtype))
  _, best, best_norm, _, _ = jax.lax.fori_loop(1, steps + 1, step, init, unroll=resolve_unroll(unroll, steps))
  return best, best_norm


def _check_options(*, norm, steps, lr, lr_decay, lr_num_decay, momentum, overshoot, binary_search_steps, repeats,
                   init, init_eps, init_steps, eps, **_) -> str:
  """Refuses a bad option (naming it and the fix); returns the canonical norm."""
  if threat.canonical_norm(norm) not in NORMS:
    raise ValueError(f"B&B: norm must be one of {NORMS} (the L1 / L0 versions are not ported); got {norm!r}")
  for name, v, low in (("steps", steps, 0), ("lr_num_decay", lr_num_decay, 1),
                       ("binary_search_steps", binary_search_steps, 0), ("repeats", repeats, 1),
                       ("init_steps", init_steps, 0)):
    if int(v) != v or v < low:
      raise ValueError(f"B&B: {name} must be an int >= {low}; got {v}")
  if not lr > 0 or not 0 < lr_decay <= 1:
    raise ValueError(f"B&B: need lr > 0 and 0 < lr_decay <= 1; got lr={lr}, lr_decay={lr_decay}")
  if not 0 <= momentum < 1:
    raise ValueError(f"B&B: momentum must lie in [0, 1); got {momentum}")
  if not 1 <= overshoot < 2:
    raise ValueError(f"B&B: overshoot must lie in [1, 2) (it aims overshoot times past the boundary); got {overshoot}")
  if init == "pgd" and init_eps is None and eps is None:
    raise ValueError("B&B: the PGD start needs a radius: pass eps (robust accuracy at eps) or init_eps "
                     "(e.g. init_eps=8/255), or init=an attack function (logits_fn, x, y, key) -> x_start")
  if init != "pgd" and not callable(init):
    raise ValueError(f"B&B: init must be 'pgd' or an attack function (logits_fn, x, y, key) -> x_start; got {init!r}")
  return threat.canonical_norm(norm)


def bb_search(logits_fn: LogitsFn, x: Array, y: Array, key, *, norm="linf", eps=None, steps: int = 1000,
              lr: float = 1e-3, lr_decay: float = 0.5, lr_num_decay: int = 20, momentum: float = 0.8,
              overshoot: float = 1.1, binary_search_steps: int = 10, repeats: int = 1,
              init: str | Callable = "pgd", init_eps=None, init_steps: int = 20, init_step_size=None,
              targeted: bool = False, verify: bool = True, unroll: int | bool | None = None) -> MinNormResult:
  """B&B returning a ``MinNormResult`` (see ``bb`` and the module docstring)."""
  check_min_norm_args(x, y, eps, steps, "B&B")
  norm = _check_options(norm=norm, steps=steps, lr=lr, lr_decay=lr_decay, lr_num_decay=lr_num_decay,
                        momentum=momentum, overshoot=overshoot, binary_search_steps=binary_search_steps,
                        repeats=repeats, init=init, init_eps=init_eps, init_steps=init_steps, eps=eps)
  if init == "pgd":
    radius = eps if init_eps is None else init_eps
    check_min_norm_args(x, y, radius, init_steps, "B&B's PGD start")
    alpha = per_example(radius, x) / 2 if init_step_size is None else init_step_size

    def start(ks):
      return pgd(logits_fn, x, y, ks, eps=radius, step_size=alpha, steps=init_steps, norm=norm,
                 targeted=targeted)
  else:
    def start(ks):
      return init(logits_fn, x, y, ks)
  keys = example_keys(key, x.shape[0])
  limit = jnp.full((x.shape[0],), jnp.inf, x.dtype) if eps is None else per_example(eps, x)

  def run(rep):
    ks = keys if repeats == 1 else fold_keys(keys, rep)
    return bb_run(logits_fn, x, y, start(ks), norm=norm, steps=steps, lr=lr, lr_decay=lr_decay,
                  lr_num_decay=lr_num_decay, momentum=momentum, overshoot=overshoot,
                  binary_search_steps=binary_search_steps, targeted=targeted, unroll=unroll)

  def unbroken(best_norm):  # no adversarial yet, or none within eps
    return ~jnp.isfinite(best_norm) | (best_norm > limit)

  def cond(s):
    return (s[0] < repeats) & jnp.any(unbroken(s[2]))

  def body(s):
    rep, best, best_norm = s
    cand, cand_norm = run(rep)
    better = unbroken(best_norm) & (cand_norm < best_norm)
    return rep + 1, select(better, cand, best), jnp.where(better, cand_norm, best_norm)

  # Start from "nothing found" so that the attack is traced once, inside the loop.
  _, best, best_norm = jax.lax.while_loop(cond, body, (0, x, jnp.full((x.shape[0],), jnp.inf, x.dtype)))
  return min_norm_output(logits_fn, x, y, best, jnp.isfinite(best_norm), norm, targeted, eps, verify)


def bb(logits_fn: LogitsFn, x: Array, y: Array, key, *, norm="linf", eps=None, steps: int = 1000,
       lr: float = 1e-3, lr_decay: float = 0.5, lr_num_decay: int = 20, momentum: float = 0.8,
       overshoot: float = 1.1, binary_search_steps: int = 10, repeats: int = 1,
       init: str | Callable = "pgd", init_eps=None, init_steps: int = 20, init_step_size=None,
       targeted: bool = False, verify: bool = True, unroll: int | bool | None = None) -> Array:
  """Brendel & Bethge attack from a PGD start; returns x_adv like x: the smallest adversarial found, x where
  none (see the module docstring). Defaults are foolbox 3.3.4's; the papers' protocols use steps=200
  (UDR, ADR/ASCL) or 100 with repeats=3 (CCE).

  Args:
    key: one PRNG key or (B,) per-example keys (the PGD start's random init; repeat r folds r in).
    norm: 'linf' or 'l2'.
    eps: None (the minimum-norm point) or scalar / (B,): points with ||x_adv - x||_p > eps are returned as x
      (accuracy on the output = robust accuracy at eps); also the PGD start's radius unless init_eps is given.
    steps: B&B iterations (static).
    lr: the trust region's relative radius, r = lr D (D the input size).
    lr_decay: factor applied to lr every steps // lr_num_decay steps.
    lr_num_decay: how many times lr decays over the run.
    momentum: momentum of the estimated boundary normal.
    overshoot: aim factor past the boundary.
    binary_search_steps: halvings of the line search from the start towards x.
    repeats: runs on the points still unbroken (no adversarial, or none within eps), each from a fresh PGD start.
    init: 'pgd' (PGD-init_steps with radius init_eps or eps, step init_step_size, default radius / 2, random
      start) or an attack function ``(logits_fn, x, y, key) -> x_start``; starts that are not adversarial
      leave their point unbroken.
    init_eps: radius of the PGD start (default: eps).
    init_steps: iterations of the PGD start.
    init_step_size: step of the PGD start (default: its radius / 2).
    targeted: y holds target classes.
    verify: re-check the returned points with one forward pass.
    unroll: ``lax.fori_loop`` unroll factor of the B&B steps.
  """
  return bb_search(logits_fn, x, y, key, norm=norm, eps=eps, steps=steps, lr=lr, lr_decay=lr_decay,
                   lr_num_decay=lr_num_decay, momentum=momentum, overshoot=overshoot,
                   binary_search_steps=binary_search_steps, repeats=repeats, init=init, init_eps=init_eps,
                   init_steps=init_steps, init_step_size=init_step_size, targeted=targeted, verify=verify,
                   unroll=unroll).x_adv


_configured_bb = configured(bb)


def _bb_factory(**config):
  """``configured(bb)`` that also checks the option values when the attack is configured."""
  attack = _configured_bb(**config)
  defaults = {k: q.default for k, q in inspect.signature(_configured_bb).parameters.items()}
  _check_options(**{**defaults, **config})
  return attack


_bb_factory.__signature__ = inspect.signature(_configured_bb)
_bb_factory.__doc__ = bb.__doc__

REGISTRY = {
    "bb": AttackInfo(_bb_factory, norms=NORMS, min_norm=True,
                     summary="Brendel & Bethge boundary attack from a PGD start (Brendel et al. 2019; foolbox "
                             "defaults); optional eps"),
}
