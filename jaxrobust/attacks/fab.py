"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020), L-inf, L2 and L1, untargeted and targeted (FAB-T).

A port of ``autoattack/fab_base.py`` + ``fab_pt.py`` + ``fab_projections.py``. FAB is a minimum-norm attack; as
inside AutoAttack, a point counts as broken only if the adversarial point it found has ||delta||_p <= eps.

One run (``attack_single_run``) from x1 = x0 (restart r = 0) or x1 = clip(x0 + eps/2 * t/||t||_p) (r > 0;
t ~ U(-1,1)^d for Linf, N(0, I) for L2 and L1), N iterations of

    f_j = z_j(x1) - z_y(x1),  w_j = grad f_j(x1)                      (FAB-T: the single j = target)
    j*  = argmin_{j != y} |f_j| / ||w_j||_q                             (q the dual norm: 1 for Linf, 2 for L2,
                                                                         inf for L1)
    H   = {u : <w_j*, u - x1> + f_j* = 0}                               (the linearised decision boundary)
    d1  = proj_box(x1 -> H) - x1,  d2 = proj_box(x0 -> H) - x0          (min-norm steps onto H inside [0, 1]^d)
    alpha = min(max(||d1|| / (||d1|| + ||d2||), 0), alpha_max)         (norms floored at 1e-8)
    x1  <- clip_[0,1]((x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha)
    if argmax z(x1) != y:  keep x1 as best when ||x1 - x0|| < best norm;  x1 <- x0 + beta (x1 - x0)

with AutoAttack's alpha_max = 0.1, eta = 1.05, beta = 0.9, N = 100. ``project_onto_hyperplane`` solves the
box-constrained projection exactly: after orienting w so that c = <w, t> - b >= 0, the minimal step moves each
coordinate towards its box bound by min(lambda, cap_i) (Linf: cap_i = room to the bound, weight |w_i|; L2:
d_i = -w_i min(lambda, r_i), weight w_i^2), with the water level lambda solving sum_i weight_i min(lambda, cap_i) = c
(the reference finds the same lambda by bisection); if even the box corner cannot reach H, the full move is taken.
L1 (``fab_projections.projection_l1``): the L1-minimal step moves the coordinates in decreasing order of |w_i| all
the way to their box bound and the first one that can close the remaining gap c part of the way (a fractional
knapsack); found here from a stable sort of -|w| and prefix sums (the reference: argsort of 1/|w| and a
ceil(log2 d)-step search, which can stop one coordinate short when d is a power of two; see ``_project_l1``).

Restarts/targets run only on the points still robust (masks on the full batch, as in apgd.py); FAB-T uses the
targets 2nd..(n+1)-th largest clean logit. The untargeted version needs all K input gradients per step (K VJPs).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import (as_partial, check_counts, check_n_target_classes, check_run_indices,
                                           prepare_linf_or_l2,
                                           top_k_targets)
from jaxrobust.attacks.per_example import (expand, fold_keys, indexed_keys, keyed_batch, run_until_all_fooled,
                                           select)
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array

_NORMS = ("linf", "l2", "l1")

# Bisection steps of the water-level search (see ``_water_level_bisect``).
BISECT_ITERS = 48


# ----------------------------------------------------------------------------------------
# Box-constrained projection onto a hyperplane
# ----------------------------------------------------------------------------------------

def _water_level(u: Array, cap: Array, c: Array, method: str = "auto") -> Array:
  """lambda >= 0 with sum_i u_i min(lambda, cap_i) = c, per row; +inf when sum_i u_i cap_i <= c.

  u, cap: (N, D) >= 0; c: (N,) >= 0. g(lambda) = sum_i u_i min(lambda, cap_i) is piecewise linear and
  non-decreasing with breakpoints at the caps. With lambda_0 the largest cap where g <= c and S = {i : cap_i <=
  lambda_0} the saturated coordinates, lambda = (c - sum_S u_i cap_i) / sum_{not S} u_i (exact).
  g at every cap comes from an all-pairs sum for small D ('pairs', O(D^2), no sort: XLA's CPU sort is slow)
  or from a sort and prefix sums ('sort', O(D log D)); 'bisect' brackets lambda instead (``_water_level_bisect``);
  'auto' picks pairs for D <= 128, bisect above.
  """
  d = cap.shape[1]
  if method == "auto":
    method = "pairs" if d <= 128 else "bisect"
  if method == "bisect":
    return _water_level_bisect(u, cap, c)
  if method == "pairs":
    g = jnp.einsum("nj,nkj->nk", u, jnp.minimum(cap[:, :, None], cap[:, None, :]))
  else:
    order = jnp.argsort(cap, axis=1)
    cs = jnp.take_along_axis(cap, order, axis=1)
    us = jnp.take_along_axis(u, order, axis=1)
    uc = us * cs
    g_sorted = jnp.cumsum(uc, axis=1) - uc + cs * jnp.flip(jnp.cumsum(jnp.flip(us, 1), axis=1), 1)
    g = jnp.zeros_like(g_sorted).at[jnp.arange(cap.shape[0])[:, None], order].set(g_sorted)
  lam0 = jnp.max(jnp.where(g <= c[:, None], cap, -1.0), axis=1)
  sat = cap <= lam0[:, None]
  below = jnp.sum(jnp.where(sat, u * cap, 0.0), axis=1)
  tail = jnp.sum(jnp.where(sat, 0.0, u), axis=1)
  lam = jnp.maximum(c - below, 0.0) / jnp.where(tail > 0, tail, 1.0)
  return jnp.where(tail > 0, lam, jnp.inf)


def _water_level_bisect(u: Array, cap: Array, c: Array, n_iter: int = BISECT_ITERS) -> Array:
  """``_water_level`` by bisection on lambda, then the same exact linear solve on the saturated set.

  Keeps lo <= lambda* <= hi with g(lo) <= c < g(hi); the bracket is halved arithmetically, or
  geometrically while hi / lo > 1e3 (L2 caps reach 1e12). S = {cap_i <= lo} misses only caps
  within the final bracket of lambda*, so the solve is exact up to that width (2^-n_iter of the
  range), below float32 resolution for n_iter >= 40. Costs n_iter O(D) passes: on a 2-core CPU with
  D = 784 and 96 rows, 2-3 ms against 13-16 ms for the sort (XLA:CPU's sort is slow;
  benchmarks/aa_component_probe.py).
  """
  total = jnp.sum(u * cap, axis=1)
  floor = jnp.asarray(1e-12, cap.dtype)

  def body(_, bracket):
    lo, hi = bracket
    geometric = hi > 1e3 * jnp.maximum(lo, floor)
    mid = jnp.where(geometric, jnp.sqrt(jnp.maximum(lo, floor) * hi), 0.5 * (lo + hi))
    ok = jnp.sum(u * jnp.minimum(mid[:, None], cap), axis=1) <= c
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

  lo, _ = jax.lax.fori_loop(0, n_iter, body, (jnp.zeros_like(c), jnp.max(cap, axis=1)))
  sat = cap <= lo[:, None]
  below = jnp.sum(jnp.where(sat, u * cap, 0.0), axis=1)
  tail = jnp.sum(jnp.where(sat, 0.0, u), axis=1)
  lam = jnp.maximum(c - below, 0.0) / jnp.where(tail > 0, tail, 1.0)
  return jnp.where((tail > 0) & (total > c), lam, jnp.inf)


def _project_l1(t: Array, w: Array, c: Array) -> Array:
  """L1-minimal d with <w, d> = -c (c >= 0, w oriented), t + d in [0, 1]^D; the full move where unreachable.

  cap_i = |w_i| room_i (room_i = t_i where w_i > 0, 1 - t_i where w_i < 0) is what coordinate i can remove from c.
  In the order of decreasing |w_i|, s_j = c - sum_{first j} cap; the coordinates before position l = (#{j : s_j > 0})
  - 1 move fully, the one at l moves by -s_l / w_l, the rest stay (``projection_l1`` of the reference, exact search).
  """
  full = jnp.where(w < 0, 1.0 - t, -t) * (w != 0)          # move to the bound that lowers <w, x>
  cap = -jnp.minimum(-w * t, w * (1.0 - t))                 # the reference's -ds (>= 0)
  order = jnp.argsort(-jnp.abs(w), axis=1, stable=True)
  cap_sorted = jnp.take_along_axis(cap, order, axis=1)
  s = c[:, None] - jnp.concatenate([jnp.zeros_like(c)[:, None], jnp.cumsum(cap_sorted, axis=1)], axis=1)
  reachable = s[:, -1] < 0
  pos = jnp.maximum(jnp.sum(s > 0, axis=1) - 1, 0)          # s is non-increasing: s > 0 is a prefix
  k = jnp.take_along_axis(order, pos[:, None], axis=1)[:, 0]
  s_at = jnp.take_along_axis(s, pos[:, None], axis=1)[:, 0]
  w_k = jnp.take_along_axis(w, k[:, None], axis=1)[:, 0]
  alpha = -s_at / jnp.where(w_k != 0, w_k, 1.0)
  rank = jnp.argsort(order, axis=1)                          # position of each coordinate in the order
  d = jnp.where(rank < pos[:, None], full, 0.0)
  d = jnp.where(jnp.arange(w.shape[1])[None, :] == k[:, None], alpha[:, None], d)
  return jnp.where(reachable[:, None], d, full)


def project_onto_hyperplane(t: Array, w: Array, b: Array, norm: str = "linf", method: str = "auto") -> Array:
  """Minimal-norm d with <w, t + d> = b and t + d in [0, 1]^D (the full move to the box corner if unreachable).

  t, w: (N, D); b: (N,). Returns d (N, D); d_i = 0 where w_i = 0 (Linf) or |w_i| <= 1e-8 (L2), as the reference.
  """
  norm = threat.canonical_norm(norm)
  c = jnp.sum(w * t, axis=1) - b
  sgn = jnp.where(c >= 0, 1.0, -1.0).astype(t.dtype)
  w = w * sgn[:, None]
  c = c * sgn  # now >= 0: the step must lower <w, x> by c
  if norm == "linf":
    neg = w < 0
    room = jnp.where(neg, 1.0 - t, t)   # distance to the bound that lowers <w, x>
    lam = _water_level(jnp.abs(w), room, c, method)
    d = jnp.where(neg, 1.0, -1.0) * jnp.minimum(lam[:, None], room)
    return d * (w != 0)
  if norm == "l2":
    live = jnp.abs(w) > 1e-8
    w_safe = jnp.where(live, w, 1.0)
    # r_i: the multiplier at which -r_i w_i reaches coordinate i's box bound.
    r = jnp.where(live, jnp.maximum(t / w_safe, (t - 1.0) / w_safe), 0.0)
    r = jnp.clip(r, 0.0, 1e12)
    lam = _water_level(jnp.where(live, w * w, 0.0), r, c, method)
    d = -w * jnp.minimum(lam[:, None], r)
    return d * live
  if norm == "l1":
    return _project_l1(t, w, c) * (jnp.abs(w) > 1e-8)
  raise ValueError(f"FAB supports 'linf', 'l2' and 'l1'; got {norm!r}")


# ----------------------------------------------------------------------------------------
# One FAB run
# ----------------------------------------------------------------------------------------

class FabResult(NamedTuple):
  """adv: (B, ...) the smallest-norm adversarial point found (x where none); norm: (B,) its ||delta|| (1e10: none)."""
  adv: Array
  norm: Array


def _flat_norm(v: Array, norm: str) -> Array:
  return threat.per_example_norm(v, norm)


def _single_run(logits_fn, x, y, target, ex_keys, eps, *, norm, n_iter, alpha_max, eta, beta,
                use_rand_start) -> FabResult:
  """attack_single_run on every example. target (B,) for FAB-T, None for untargeted; eps (B,) (random start)."""
  b = x.shape[0]
  shape = x.shape[1:]
  x0 = x.reshape(b, -1)
  if use_rand_start:
    if norm == "linf":
      t = jax.vmap(lambda k: jax.random.uniform(k, shape, x.dtype, -1.0, 1.0))(ex_keys)
    else:
      t = jax.vmap(lambda k: jax.random.normal(k, shape, x.dtype))(ex_keys)
    # res2 is reset to 1e10 in every call of the reference, so min(res2, eps) = eps.
    x1 = jnp.clip(x + expand(eps, x) * t / expand(_flat_norm(t, norm), x) * 0.5, 0.0, 1.0)
  else:
    x1 = x
  def diff_logits_grads(xa):
    """f (B, M) and grad f (B, M, D): M = K (untargeted; f_y := 1e10) or 1 (targeted)."""
    if target is not None:
      def fdiff(z):
        logits = logits_fn(z)
        zy = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        zt = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
        return jnp.sum(zt - zy), zt - zy
      g, f = jax.grad(fdiff, has_aux=True)(xa)
      return f[:, None], g.reshape(b, 1, -1)
    logits, vjp = jax.vjp(logits_fn, xa)
    kk = logits.shape[1]
    cts = jnp.broadcast_to(jnp.eye(kk, dtype=logits.dtype)[:, None, :], (kk, b, kk))
    jac = jax.vmap(lambda ct: vjp(ct)[0])(cts)              # (K, B, ...)
    jac = jnp.moveaxis(jac, 0, 1).reshape(b, kk, -1)        # (B, K, D)
    onehot = jax.nn.one_hot(y, kk, dtype=bool)
    f = logits - jnp.take_along_axis(logits, y[:, None], axis=1)
    g = jac - jnp.take_along_axis(jac, y[:, None, None], axis=1)
    return jnp.where(onehot, 1e10, f), g

  def body(_, carry):
    x1, adv, res2 = carry
    f, g = diff_logits_grads(x1)
    if norm == "linf":
      dual = jnp.sum(jnp.abs(g), axis=2)
    elif norm == "l1":
      dual = jnp.max(jnp.abs(g), axis=2)
    else:
      dual = jnp.sqrt(jnp.sum(g * g, axis=2))
    dist = jnp.abs(f) / (1e-12 + dual)
    ind = jnp.argmin(dist, axis=1)
    w = jnp.take_along_axis(g, ind[:, None, None], axis=1)[:, 0]
    fj = jnp.take_along_axis(f, ind[:, None], axis=1)[:, 0]
    x1f = x1.reshape(b, -1)
    bb = -fj + jnp.sum(w * x1f, axis=1)
    d3 = project_onto_hyperplane(jnp.concatenate([x1f, x0], 0), jnp.concatenate([w, w], 0),
                                 jnp.concatenate([bb, bb], 0), norm)
    d1, d2 = d3[:b], d3[b:]
    a0 = jnp.maximum(_flat_norm(d3, norm), 1e-8)
    a1, a2 = a0[:b], a0[b:]
    alpha = jnp.minimum(jnp.maximum(a1 / (a1 + a2), 0.0), alpha_max)[:, None]
    x1f = jnp.clip((x1f + eta * d1) * (1 - alpha) + (x0 + d2 * eta) * alpha, 0.0, 1.0)
    x1 = x1f.reshape(x.shape)

    is_adv = losses_lib.predict(logits_fn(x1)) != y
    t = _flat_norm(x1 - x, norm)
    better = is_adv & (t < res2)
    adv = select(better, x1, adv)
    res2 = jnp.where(better, t, res2)
    x1 = select(is_adv, x + (x1 - x) * beta, x1)
    return x1, adv, res2

  _, adv, res2 = jax.lax.fori_loop(0, n_iter, body, (x1, x, jnp.full((b,), 1e10, x.dtype)))
  return FabResult(adv=select(res2 < 1e10, adv, x), norm=res2)


_STATIC = ("norm", "n_iter", "n_restarts", "n_target_classes", "alpha_max", "eta", "beta", "targeted")


def fab_masked(logits_fn, x, y, key, index, active, eps, *, norm="linf", n_iter=100, n_restarts=1,
               n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, targeted=False, runs=None):
  """Masked core for ``fab`` / ``fab_targeted`` and AutoAttack. Returns (x_adv, fooled).

  fooled (B,) = active & clean-correct & argmax z(x_adv) != y & ||x_adv - x|| <= eps (AutoAttack's FAB check);
  x_adv is FAB's point where fooled and x elsewhere. Restart r > 0 uses the random start; targets in order.
  runs: (start, stop), the runs r = target_rank * n_restarts + restart to do (traced; as ``apgd.apgd_masked``).
  """
  check_counts("FAB", n_iter=n_iter, n_restarts=n_restarts)
  n_runs = (int(n_target_classes) if targeted else 1) * int(n_restarts)
  start, stop = (0, n_runs) if runs is None else runs
  # jit keys its cache on the *set* of static kwargs passed, so always pass all of them.
  return _fab_masked_jit(logits_fn, x, y, key, index, active, eps, jnp.int32(start), jnp.int32(stop),
                         norm=norm, n_iter=int(n_iter),
                         n_restarts=int(n_restarts), n_target_classes=int(n_target_classes) if targeted else 0,
                         alpha_max=float(alpha_max), eta=float(eta), beta=float(beta), targeted=bool(targeted))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fab_masked_jit(logits_fn, x, y, key, index, active, eps, run_start, run_stop, *, norm, n_iter, n_restarts,
                    n_target_classes, alpha_max, eta, beta, targeted):
  ex_keys = indexed_keys(key, index)
  clean_logits = logits_fn(x)
  targets = top_k_targets(clean_logits, n_target_classes) if targeted else None
  correct = losses_lib.predict(clean_logits) == y
  still = active & correct

  def run(r):
    tgt = targets[r // n_restarts] if targeted else None
    # use_rand_start = (restart counter > 0) in the reference; r is traced here, so the random start is always
    # drawn and its radius is eps/2 for r > 0 and 0 for r = 0 (x1 = clip(x) = x), which is the same thing.
    radius = jnp.where((r % n_restarts) > 0, eps, 0.0)
    return _single_run(logits_fn, x, y, tgt, fold_keys(ex_keys, r), radius, norm=norm, n_iter=n_iter,
                       alpha_max=alpha_max, eta=eta, beta=beta, use_rand_start=n_restarts > 1)

  def fooling_run(r):
    res = run(r)
    # AutoAttack's check: misclassified *and* within the eps-ball.
    acc_curr = (losses_lib.predict(logits_fn(res.adv)) == y) | (_flat_norm(res.adv - x, norm) > eps)
    return res.adv, ~acc_curr

  still, adv = run_until_all_fooled(fooling_run, still, x, run_start, run_stop)
  return adv, active & correct & ~still


def fab_rows(logits_fn, x, y, key, index, active, eps, run, *, norm="linf", n_iter=100, n_restarts=1,
             n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, targeted=True):
  """One (point, run) pair per row: row i does run ``run_i`` of ``fab_masked`` for point x_i (same target,
  start and per-example key as run r there). Returns (x_adv, fooled) per row, as ``fab_masked`` for one run;
  AutoAttack uses it to run all the targets of FAB-T as one program."""
  check_counts("FAB", n_iter=n_iter, n_restarts=n_restarts)
  check_run_indices("FAB rows", run, x, (int(n_target_classes) if targeted else 1) * int(n_restarts))
  return _fab_rows_jit(logits_fn, x, y, key, index, active, eps, jnp.asarray(run, jnp.int32), norm=norm,
                       n_iter=int(n_iter), n_restarts=int(n_restarts),
                       n_target_classes=int(n_target_classes) if targeted else 0, alpha_max=float(alpha_max),
                       eta=float(eta), beta=float(beta), targeted=bool(targeted))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fab_rows_jit(logits_fn, x, y, key, index, active, eps, run, *, norm, n_iter, n_restarts, n_target_classes,
                  alpha_max, eta, beta, targeted):
  ex_keys = fold_keys(indexed_keys(key, index), run)
  clean_logits = logits_fn(x)
  tgt = None
  if targeted:
    tgt = jnp.take_along_axis(top_k_targets(clean_logits, n_target_classes), (run // n_restarts)[None], axis=0)[0]
  correct = losses_lib.predict(clean_logits) == y
  radius = jnp.where((run % n_restarts) > 0, eps, 0.0)  # as in _fab_masked_jit's run(r)
  res = _single_run(logits_fn, x, y, tgt, ex_keys, radius, norm=norm, n_iter=n_iter, alpha_max=alpha_max,
                    eta=eta, beta=beta, use_rand_start=n_restarts > 1)
  acc_curr = (losses_lib.predict(logits_fn(res.adv)) == y) | (_flat_norm(res.adv - x, norm) > eps)
  fooled = active & correct & ~acc_curr
  return select(fooled, res.adv, x), fooled


@functools.partial(jax.jit, static_argnames=("norm", "n_iter", "alpha_max", "eta", "beta", "use_rand_start"))
def _fab_run_jit(logits_fn, x, y, key, index, eps, target, *, norm, n_iter, alpha_max, eta, beta,
                 use_rand_start):
  return _single_run(logits_fn, x, y, target, fold_keys(indexed_keys(key, index), 0), eps, norm=norm,
                     n_iter=n_iter, alpha_max=alpha_max, eta=eta, beta=beta, use_rand_start=use_rand_start)


def fab(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", n_iter: int = 100, n_restarts: int = 1,
        alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9) -> Array:
  """Untargeted FAB; a point is broken iff FAB finds a misclassified point with ||delta||_p <= eps.

  x: (B, ...) in [0, 1]; y: (B,); eps scalar or (B,). Returns x_adv (B, ...): FAB's point where broken, else x.
  """
  norm, eps_v, _ = prepare_linf_or_l2(logits_fn, x, y, eps, norm, "FAB", 2, norms=_NORMS)
  adv, _ = fab_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v, norm=norm,
                      n_iter=n_iter, n_restarts=n_restarts, alpha_max=float(alpha_max), eta=float(eta),
                      beta=float(beta), targeted=False)
  return adv


def fab_targeted(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", n_iter: int = 100, n_restarts: int = 1,
                 n_target_classes: int = 9, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9) -> Array:
  """FAB-T: one FAB run per target (2nd..(n+1)-th largest clean logit) on the points still robust."""
  norm, eps_v, k = prepare_linf_or_l2(logits_fn, x, y, eps, norm, "FAB", 2, "FAB-T", norms=_NORMS)
  check_n_target_classes(n_target_classes, k, "FAB-T")
  adv, _ = fab_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v, norm=norm,
                      n_iter=n_iter, n_restarts=n_restarts, n_target_classes=n_target_classes,
                      alpha_max=float(alpha_max), eta=float(eta), beta=float(beta), targeted=True)
  return adv


def fab_min_norm(logits_fn, x: Array, y: Array, key, *, norm="linf", n_iter: int = 100, target=None,
                 eps=None, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9) -> FabResult:
  """One FAB run (no eps check): the smallest adversarial perturbation found and its norm (1e10 = none).

  Starts at x, or at the random start of radius eps/2 when ``eps`` is given. ``target`` (B,) for FAB-T.
  """
  norm, eps_v, _ = prepare_linf_or_l2(logits_fn, x, y, 0.0 if eps is None else eps, norm, "FAB", 2, norms=_NORMS)
  return _fab_run_jit(as_partial(logits_fn), x, y, key, jnp.arange(x.shape[0]), eps_v, target, norm=norm, n_iter=n_iter,
                      alpha_max=float(alpha_max), eta=float(eta), beta=float(beta),
                      use_rand_start=eps is not None)


REGISTRY = {
    "fab": AttackInfo(configured(fab), norms=_NORMS, summary="fast adaptive boundary (Croce & Hein 2020)"),
    "fab_t": AttackInfo(configured(fab_targeted), norms=_NORMS, summary="targeted FAB, top-k targets",
                        own_targets="FAB-T runs one attack per target, the 2nd..(n+1)-th largest clean logits "
                                    "(n_target_classes), and keeps the first that succeeds; for one chosen target "
                                    "use a single-target attack, e.g. get_attack('pgd', eps=..., target=...)"),
}
