"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness ..."), L-inf, L2 and L1.

A faithful port of ``autoattack/autopgd_base.py`` (``APGDAttack``, ``APGDAttack_targeted``); L1 is APGD-L1 of
Croce & Hein 2021 ("Mind the box: l1-APGD for sparse adversarial attacks", ICML), see "L1" below.
One run of N iterations on a batch, with P = box o Pi_eps (ball projection, then [0, 1]):

    x_0   = clip_[0,1](x + eps * t / ||t||_p)     t ~ U(-1, 1)^d (Linf) or N(0, I) (L2); ||x_0 - x|| = eps pre-clip
    eta   = 2 eps                                  per example
    z     = P(x_i + eta * s(g_i))                  s = sign (Linf) or g / ||g||_2 (L2); g_i = grad_x L(x_i) (EoT mean)
    x_i+1 = P(x_i + a (z - x_i) + (1 - a)(x_i - x_i-1)),   a = 1 at i = 0, else 0.75
    L(x_i+1) > loss_best (strict)   ->  x_best, grad_best, loss_best <- x_i+1, g_i+1, L(x_i+1)
    argmax f(x_i+1) != y            ->  x_best_adv <- x_i+1;  acc <- acc & [argmax f(x_i+1) = y]

Checkpoints (``checkpoint_schedule``): k_0 = max(floor(0.22 N), 1), then k <- max(k - max(floor(0.03 N), 1),
max(floor(0.06 N), 1)); a check falls k iterations after the previous one. At a check the step of example s halves iff

    (1) #{j in the last k iterations: L_j > L_j-1} <= rho k        (L_-1 reads as 0, a quirk of the reference), or
    (2) eta was not halved at the previous check and loss_best did not increase since it,

and examples whose step halves restart from x_best with grad_best. N = 100 gives checks at 0-based
i in {21, 40, 56, 69, 79, 86, 92, 98}; N = 10 at {1, ..., 9}.

Losses: 'ce', 'dlr' (untargeted, K >= 3) and, for APGD-T, 'dlr-targeted' (K >= 4) with targets the 2nd .. (n+1)-th
largest clean logits, one full run per target on the points still robust. ``apgd`` returns what AutoAttack uses
(``perturb(best_loss=False)``): x_best_adv for fooled points and the clean x for every other point; restarts and
targets only update points that are still robust. ``best_loss=True`` returns the highest-loss point over restarts.
``apgd_run`` returns one run with its traces (loss_best per iteration, step sizes, iterates) for diagnostics.

L1 (``norm='l1'``, the reference's L1 branch of ``attack_single_run``): the same loop with three changes,

    x_0   = P1(x + t),  t ~ N(0, I)                 P1 = the exact projection onto {||z - x||_1 <= eps} n [0, 1]^d
                                                   (``threat.project_l1_box``; the reference's ``L1_projection``)
    eta   = eps (alpha = 1);  topk = 0.2;  sp_old = d
    x_i+1 = P1(x_i + eta s / ||s||_1),  s = sign(g_i * [|g_i| >= q_i])    no momentum; q_i the
                                                   floor((1 - topk) d)-th smallest |g_i| (the top-k coordinates)
    checks every k = max(floor(0.04 N), 1) iterations (fixed k):  sp = ||x_best - x||_0,
           restart r = [sp / sp_old < 0.95];  topk <- sp / d / 1.5;  sp_old <- sp;
           eta <- eps if r else eta / 1.5, clipped to [eps / 10, eps];  restarted examples continue from x_best
           with grad_best.

``use_largereps=True`` (AutoAttack's L1 'standard' version; ``decr_eps_pgd``) splits the N iterations into runs
at 3 eps, 2 eps and eps with ceil(0.3 N), ceil(0.3 N) and the rest iterations (N = 100: 30, 30, 40), starting from P1 at 3 eps of x + N(0, I) and each run from
the previous run's x_best projected onto the smaller ball; sparsity then starts at topk = ||x_0 - x||_0 / d / 1.5
and sp_old = ||x_0 - x||_0. Only the last (eps) run's adversarial points and flags count.

JAX design: a run is one ``lax.scan`` over the static checkpoint schedule (per-example step sizes, counters and
best-so-far tensors in the carry; masks instead of data-dependent branches). Restarts/targets are one
``lax.while_loop`` that stops as soon as no point is left to attack, inside the same compiled program. Instead of
gathering the still-robust points (dynamic shapes), every run covers the whole batch and a mask decides which
results are kept; with an eval-mode model every example is independent, so this equals the reference's subsetting.
Randomness is per example: example ``i`` draws from ``fold_in(key, index[i])``, so a point gets the same start
whatever batch it sits in (this is what makes AutoAttack's bucketed stages reproduce a standalone run exactly).

Randomised models (EoT): with ``randomized=True`` the model is called as ``logits_fn(x, key)`` and the gradient is
the mean over ``eot_iter`` draws with fresh keys (the loss and prediction come from the last draw, as in the
reference).

Compiled programs are cached on ``logits_fn``: pass the same function object (ideally a
``jax.tree_util.Partial(apply_fn, params)``, whose params are then traced arguments rather than constants) to
reuse them.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import (as_partial, check_counts, check_n_target_classes, check_run_indices,
                                           model_with_key, prepare_linf_or_l2, top_k_targets)
from jaxrobust.attacks.per_example import (expand, fold_keys, indexed_keys, keyed_batch, run_until_all_fooled,
                                           select)
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array

# The AutoAttack reference's stabiliser in its L2 step direction and projection (``normalize``, ``check_shape``).
_STABILIZER = 1e-12

_LOSSES = ("ce", "dlr", "dlr-targeted", "ce-targeted")
_TARGETED_LOSSES = ("dlr-targeted", "ce-targeted")


# ----------------------------------------------------------------------------------------
# Schedule, init, losses
# ----------------------------------------------------------------------------------------

def checkpoint_schedule(n_iter: int) -> tuple[tuple[int, int], ...]:
  """((i, k), ...): 0-based iterations at which the step size is checked and the window length k used there.

  k_0 = max(int(0.22 N), 1), k_min = max(int(0.06 N), 1), decrement max(int(0.03 N), 1): the check happens when
  k iterations have passed since the previous one (the reference's ``counter3 == k``).
  """
  k = max(int(0.22 * n_iter), 1)
  k_min = max(int(0.06 * n_iter), 1)
  size_decr = max(int(0.03 * n_iter), 1)
  out, counter = [], 0
  for i in range(n_iter):
    counter += 1
    if counter == k:
      out.append((i, k))
      counter = 0
      k = max(k - size_decr, k_min)
  return tuple(out)


def checkpoint_iterations(n_iter: int) -> list[int]:
  """0-based iterations with a step-size check: [21, 40, 56, 69, 79, 86, 92, 98] for N = 100."""
  return [i for i, _ in checkpoint_schedule(n_iter)]


def l1_checkpoint_schedule(n_iter: int) -> tuple[tuple[int, int], ...]:
  """((i, k), ...) of APGD-L1: a check every k = max(int(0.04 N), 1) iterations (k fixed; i 0-based)."""
  k = max(int(0.04 * n_iter), 1)
  return tuple((i, k) for i in range(n_iter) if (i + 1) % k == 0)


def largereps_schedule(n_iter: int) -> tuple[tuple[float, int], ...]:
  """((eps factor, iterations), ...) of AutoAttack's ``use_largereps`` (L1): 3 eps, 2 eps, eps with
  ceil(0.3 N), ceil(0.3 N) and N minus both (the reference's float arithmetic: N = 100 gives 30, 30, 40)."""
  iters = [math.ceil(.3 * n_iter), math.ceil(.3 * n_iter)]
  iters.append(n_iter - sum(iters))
  if min(iters) < 1:
    raise ValueError(f"use_largereps needs n_iter >= 5 (three runs of >= 1 iteration); got {n_iter}")
  return tuple(zip((3.0, 2.0, 1.0), iters))


def apgd_init(keys: Array, x: Array, eps: Array, norm: str) -> Array:
  """x + eps t / ||t||_p per example, *before* the box clip (so ||delta_0||_p = eps exactly).

  keys: (B,) per-example keys; x: (B, ...); eps: (B,). Linf: t ~ U(-1, 1)^d, L2: t ~ N(0, I).
  L1: the projection of x + t, t ~ N(0, I), onto the L1 ball intersected with the box (``threat.project_l1_box``).
  """
  shape = x.shape[1:]
  if norm == "l1":
    t = jax.vmap(lambda k: jax.random.normal(k, shape, x.dtype))(keys)
    return threat.project_l1_box(x + t, x, eps)
  if norm == "linf":
    t = jax.vmap(lambda k: jax.random.uniform(k, shape, x.dtype, -1.0, 1.0))(keys)
  else:
    t = jax.vmap(lambda k: jax.random.normal(k, shape, x.dtype))(keys)
  n = threat.per_example_norm(t, norm)
  # The reference divides by (norm + 1e-12); same here so the radius matches to float precision.
  return x + expand(eps, x) * t / expand(n + _STABILIZER, x)


def _attack_loss(name: str):
  """loss(logits, y, target) -> (B,), maximised by APGD."""
  if name == "ce":
    return lambda z, y, t: losses_lib.cross_entropy(z, y)
  if name == "dlr":
    return lambda z, y, t: losses_lib.dlr(z, y)
  if name == "dlr-targeted":
    return lambda z, y, t: losses_lib.dlr_targeted(z, y, t)
  if name == "ce-targeted":
    return lambda z, y, t: -losses_lib.cross_entropy(z, t)
  raise ValueError(f"unknown APGD loss {name!r}; expected one of {_LOSSES}")


# ----------------------------------------------------------------------------------------
# One APGD run (attack_single_run)
# ----------------------------------------------------------------------------------------

class ApgdTrace(NamedTuple):
  """Result and diagnostics of one APGD run on a batch of B examples (N iterations).

  x_best:          (B, ...) highest-loss iterate (strict improvements only).
  loss_best:       (B,) loss at x_best.
  x_best_adv:      (B, ...) last misclassified iterate (the start point if never misclassified).
  acc:             (B,) bool, never misclassified during the run (including at the start).
  x_init:          (B, ...) the start point x_0 (box-clipped).
  loss_steps:      (N, B) loss at x_i+1, i.e. after the update of iteration i.
  loss_best_steps: (N + 1, B) loss_best at the start and after each iteration.
  acc_steps:       (N + 1, B) acc at the start and after each iteration.
  step_size_steps: (N, B) the eta used by the update of iteration i.
  reduced:         (N, B) bool, eta halved at the check that ends iteration i.
  iterates:        (N, B, ...) x_i+1 (before a checkpoint restart) when ``record_iterates``; else None.
  bases:           (N, B, ...) the point x_i each update starts from when ``record_iterates``; else None.
  """
  x_best: Array
  loss_best: Array
  x_best_adv: Array
  acc: Array
  x_init: Array
  loss_steps: Array
  loss_best_steps: Array
  acc_steps: Array
  step_size_steps: Array
  reduced: Array
  iterates: Optional[Array]
  bases: Optional[Array]


def _l0(v: Array) -> Array:
  """(B, ...) -> (B,) number of non-zero entries (the reference's ``L0_norm``), as a float."""
  return jnp.sum(v.reshape(v.shape[0], -1) != 0, axis=1).astype(v.dtype)


def _l1_sparse_step(g: Array, topk: Array) -> Array:
  """APGD-L1's direction s / ||s||_1, s = sign(g [|g| >= q]), q the int((1 - topk) d)-th smallest |g| per example."""
  b = g.shape[0]
  a = jnp.abs(g.reshape(b, -1))
  n = a.shape[1]
  idx = jnp.clip((1.0 - topk) * n, 0, n - 1).astype(jnp.int32)
  q = jnp.take_along_axis(jnp.sort(a, axis=1), idx[:, None], axis=1)
  s = jnp.sign(g) * (a >= q).reshape(g.shape)
  return s / expand(threat.per_example_norm(s, "l1") + 1e-10, g)


def _single_run(model, x, y, target, ex_keys, run_key, eps, *, norm, loss, n_iter, rho, eot_iter,
                record_iterates=False, x_init=None) -> ApgdTrace:
  """attack_single_run of the reference, all examples at once. eps: (B,); ex_keys: (B,) keys; target: (B,) or None.

  x_init: (B, ...) start point instead of the random start (the reference's ``x_init``; L1 only here).
  """
  loss_fn = _attack_loss(loss)
  b = x.shape[0]
  l1 = norm == "l1"
  n_fts = int(np.prod(x.shape[1:]))

  def objective(z, k):
    logits = model(z, k)
    per_ex = loss_fn(logits, y, target)
    return jnp.sum(per_ex), (per_ex, logits)

  grad_fn = jax.grad(objective, has_aux=True)

  def loss_and_grad(xa, key):
    # EoT: average the gradient over eot_iter draws; loss and logits come from the last draw (as the reference).
    if eot_iter == 1:
      g, (l, logits) = grad_fn(xa, jax.random.fold_in(key, 0))
      return g, l, logits

    def eot_body(e, acc):
      g_sum, _, _ = acc
      g, (l, logits) = grad_fn(xa, jax.random.fold_in(key, e))
      return g_sum + g, l, logits

    _, (l0, z0) = jax.eval_shape(grad_fn, xa, key)
    init = (jnp.zeros_like(xa), jnp.zeros(l0.shape, l0.dtype), jnp.zeros(z0.shape, z0.dtype))
    g_sum, l, logits = jax.lax.fori_loop(0, eot_iter, eot_body, init)
    return g_sum / float(eot_iter), l, logits

  def candidate(x_cur, x_old, g, step, a, topk):
    """x_i+1 before the checks: P(x_i + a (z - x_i) + (1 - a)(x_i - x_i-1)), z = P(x_i + eta s(g_i)).

    L1: P1(x_i + eta s / ||s||_1) on the top-k coordinates, no momentum (x_old and a unused)."""
    if l1:
      return threat.project_l1_box(x_cur + expand(step, x) * _l1_sparse_step(g, topk), x, eps)
    # P and s in the reference's arithmetic: ||.|| + 1e-12 in both (threat.py's ``stabilizer``).
    z = threat.project_ball_and_box(x_cur + expand(step, x) * threat.normalize_gradient(g, norm, _STABILIZER), x,
                                    eps, norm, _STABILIZER)
    return threat.project_ball_and_box(x_cur + a * (z - x_cur) + (1.0 - a) * (x_cur - x_old), x, eps, norm,
                                       _STABILIZER)

  x_adv = jnp.clip(apgd_init(ex_keys, x, eps, norm) if x_init is None else x_init, 0.0, 1.0)
  x_start = x_adv
  grad, loss0, logits0 = loss_and_grad(x_adv, jax.random.fold_in(run_key, 0))
  acc = losses_lib.predict(logits0) == y
  step_max = (1.0 if l1 else 2.0) * eps
  step = step_max
  if x_init is None:
    topk, sp_old = jnp.full((b,), 0.2, x.dtype), jnp.full((b,), float(n_fts), x.dtype)
  else:
    sp_old = _l0(x_adv - x)
    topk = sp_old / n_fts / 1.5

  schedule = l1_checkpoint_schedule(n_iter) if l1 else checkpoint_schedule(n_iter)
  is_check = np.zeros(n_iter, bool)
  k_at = np.zeros(n_iter, np.int32)
  for i, k in schedule:
    is_check[i], k_at[i] = True, k
  rows = jnp.arange(n_iter)

  # The loop is rotated: iteration i starts with the gradient at its candidate x_i+1 (made at the end of
  # iteration i-1, or here for i = 0) and ends by making x_i+2. Same arithmetic as the reference's order,
  # but the model's input is a loop-carried buffer rather than a value computed in the same body, which
  # measured ~20% faster per iteration on XLA:CPU (SmallCNN, 48 rows: 17.7 vs 22.6 ms;
  # benchmarks/aa_component_probe.py, BENCHMARKS.md 1b).
  carry0 = dict(x_new=candidate(x_adv, x_adv, grad, step, jnp.asarray(1.0, x.dtype), topk), x_cur=x_adv,
                grad_best=grad, x_best=x_adv, x_best_adv=x_adv,
                loss_best=loss0, acc=acc, step=step, loss_steps=jnp.zeros((n_iter, b), loss0.dtype),
                loss_best_last_check=loss0, reduced_last_check=jnp.ones((b,), bool), topk=topk, sp_old=sp_old)

  def body(c, xs):
    i, check, k = xs
    x_cur, x_new = c["x_cur"], c["x_new"]
    g, l, logits = loss_and_grad(x_new, jax.random.fold_in(run_key, i + 1))
    pred = losses_lib.predict(logits) == y
    acc = c["acc"] & pred
    x_best_adv = select(~pred, x_new, c["x_best_adv"])

    loss_steps = c["loss_steps"].at[i].set(l)
    improved = l > c["loss_best"]
    x_best = select(improved, x_new, c["x_best"])
    grad_best = select(improved, g, c["grad_best"])
    loss_best = jnp.where(improved, l, c["loss_best"])

    topk, sp_old = c["topk"], c["sp_old"]
    reduced_last_check, loss_best_last_check = c["reduced_last_check"], c["loss_best_last_check"]
    if l1:
      # Sparsity check: restart where x_best got sparser by >= 5%, else shrink the step; k adapts to x_best.
      sp_curr = _l0(x_best - x)
      reduce = (sp_curr / sp_old < 0.95) & check
      topk = jnp.where(check, sp_curr / n_fts / 1.5, topk)
      sp_old = jnp.where(check, sp_curr, sp_old)
      step = jnp.where(check, jnp.clip(jnp.where(reduce, step_max, c["step"] / 1.5), step_max / 10.0, step_max),
                       c["step"])
    else:
      # Condition (1): increases over the last k iterations; row -1 wraps to the still-zero last row, as in
      # the reference's loss_steps[-1].
      prev = jnp.roll(loss_steps, 1, axis=0)
      window = ((rows <= i) & (rows > i - k))[:, None]
      n_incr = jnp.sum((loss_steps > prev) & window, axis=0)
      fl_osc = n_incr.astype(x.dtype) <= k.astype(x.dtype) * rho
      # Condition (2): not halved last time and no progress since the last check.
      fl_no_impr = (~c["reduced_last_check"]) & (c["loss_best_last_check"] >= loss_best)
      reduce = (fl_osc | fl_no_impr) & check
      reduced_last_check = jnp.where(check, reduce, c["reduced_last_check"])
      loss_best_last_check = jnp.where(check, loss_best, c["loss_best_last_check"])
      step = jnp.where(reduce, c["step"] / 2.0, c["step"])
    # Halved examples restart from x_best with its gradient; x_old stays x_i (the reference keeps x_adv_old).
    x_next = select(reduce, x_best, x_new)
    g_next = select(reduce, grad_best, g)

    new = dict(x_new=candidate(x_next, x_cur, g_next, step, jnp.asarray(0.75, x.dtype), topk), x_cur=x_next,
               grad_best=grad_best, x_best=x_best,
               x_best_adv=x_best_adv, loss_best=loss_best, acc=acc, step=step, loss_steps=loss_steps,
               loss_best_last_check=loss_best_last_check, reduced_last_check=reduced_last_check, topk=topk,
               sp_old=sp_old)
    out = dict(loss_best=loss_best, acc=acc, step=c["step"], reduced=reduce)
    if record_iterates:
      out["iterate"] = x_new
      out["base"] = x_cur
    return new, out

  xs = (jnp.arange(n_iter), jnp.asarray(is_check), jnp.asarray(k_at))
  c, ys = jax.lax.scan(body, carry0, xs)
  return ApgdTrace(
      x_best=c["x_best"], loss_best=c["loss_best"], x_best_adv=c["x_best_adv"], acc=c["acc"], x_init=x_start,
      loss_steps=c["loss_steps"],
      loss_best_steps=jnp.concatenate([loss0[None], ys["loss_best"]], axis=0),
      acc_steps=jnp.concatenate([acc[None], ys["acc"]], axis=0),
      step_size_steps=ys["step"], reduced=ys["reduced"],
      iterates=ys.get("iterate"), bases=ys.get("base"))


def _largereps_run(model, x, y, target, ex_keys, run_key, eps, *, loss, n_iter, rho, eot_iter) -> ApgdTrace:
  """The reference's ``decr_eps_pgd`` (L1): runs at 3 eps, 2 eps, eps (``largereps_schedule``), each from the
  previous x_best projected onto the next ball; the first from P1 at 3 eps of x + N(0, I). Returns the last run."""
  x_start = apgd_init(ex_keys, x, 3.0 * eps, "l1")
  res = None
  for s, (factor, iters) in enumerate(largereps_schedule(n_iter)):
    e = factor * eps
    x_start = threat.project_l1_box(x_start, x, e)
    res = _single_run(model, x, y, target, ex_keys, jax.random.fold_in(run_key, s), e, norm="l1", loss=loss,
                      n_iter=iters, rho=rho, eot_iter=eot_iter, x_init=x_start)
    x_start = res.x_best
  return res


# ----------------------------------------------------------------------------------------
# Perturb: restarts / targets on the points still robust (masked), one compiled program
# ----------------------------------------------------------------------------------------

_STATIC = ("norm", "loss", "n_iter", "n_restarts", "n_target_classes", "rho", "eot_iter", "randomized",
           "best_loss", "use_largereps")


def apgd_masked(logits_fn, x, y, key, index, active, eps, *, norm="linf", loss="ce", n_iter=100,
                n_restarts=1, n_target_classes=0, rho=0.75, eot_iter=1, randomized=False, best_loss=False,
                runs=None, use_largereps=False):
  """The masked core used by ``apgd``/``apgd_targeted`` and by AutoAttack's stages.

  x: (B, ...); y: (B,) int; index: (B,) int global example ids (seed the per-example randomness); active: (B,)
  bool, the points to attack; eps: (B,). Returns (x_adv, fooled): fooled (B,) bool = active, clean-correct and
  misclassified at x_adv; x_adv = x_best_adv where fooled and x elsewhere. With ``best_loss`` x_adv is the
  highest-loss point over restarts for every active point and fooled is computed at it.
  n_target_classes > 0 (with a targeted loss) runs one full attack per target c = 2..n+1 (APGD-T).
  logits_fn must be a pytree (``as_partial``). One compiled program per static configuration and shape.
  runs: (start, stop) runs only runs r in [start, stop) of the n_runs = targets x restarts (r = target_rank *
  n_restarts + restart; default all). The bounds are traced, so AutoAttack can run one target at a time on
  re-gathered points with the same program and the same per-run randomness as the all-runs call.
  use_largereps: (L1 only) every run is the 3 eps / 2 eps / eps schedule (``_largereps_run``).
  """
  if use_largereps and norm != "l1":
    raise ValueError(f"use_largereps is AutoAttack's L1 schedule; norm is {norm!r}")
  check_counts("APGD", n_iter=n_iter, n_restarts=n_restarts, eot_iter=eot_iter)
  n_runs = (int(n_target_classes) if loss in _TARGETED_LOSSES else 1) * int(n_restarts)
  start, stop = (0, n_runs) if runs is None else runs
  # jit keys its cache on the *set* of static kwargs passed, so always pass all of them.
  return _apgd_masked_jit(logits_fn, x, y, key, index, active, eps, jnp.int32(start), jnp.int32(stop),
                          norm=norm, loss=loss, n_iter=int(n_iter),
                          n_restarts=int(n_restarts), n_target_classes=int(n_target_classes), rho=float(rho),
                          eot_iter=int(eot_iter), randomized=bool(randomized), best_loss=bool(best_loss),
                          use_largereps=bool(use_largereps))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _apgd_masked_jit(logits_fn, x, y, key, index, active, eps, run_start, run_stop, *, norm, loss, n_iter,
                     n_restarts, n_target_classes, rho, eot_iter, randomized, best_loss, use_largereps):
  model = model_with_key(logits_fn, randomized)
  ex_keys = indexed_keys(key, index)
  clean_logits = model(x, jax.random.fold_in(key, 2**31 - 1))
  targeted = loss in _TARGETED_LOSSES
  targets = top_k_targets(clean_logits, n_target_classes) if targeted else None
  still = active & (losses_lib.predict(clean_logits) == y)

  def run(r):
    tgt = targets[r // n_restarts] if targeted else None
    if use_largereps:
      return _largereps_run(model, x, y, tgt, fold_keys(ex_keys, r), jax.random.fold_in(key, r), eps, loss=loss,
                            n_iter=n_iter, rho=rho, eot_iter=eot_iter)
    return _single_run(model, x, y, tgt, fold_keys(ex_keys, r), jax.random.fold_in(key, r), eps,
                       norm=norm, loss=loss, n_iter=n_iter, rho=rho, eot_iter=eot_iter)

  if best_loss:
    def body_best(r, carry):
      adv, lbest = carry
      res = run(r)
      better = res.loss_best > lbest
      return select(better, res.x_best, adv), jnp.where(better, res.loss_best, lbest)
    adv, _ = jax.lax.fori_loop(run_start, run_stop, body_best, (x, jnp.full((x.shape[0],), -jnp.inf, x.dtype)))
    adv = select(active, adv, x)
    fooled = active & (losses_lib.predict(model(adv, jax.random.fold_in(key, 2**31 - 2))) != y)
    return adv, fooled

  def fooling_run(r):
    res = run(r)
    return res.x_best_adv, ~res.acc

  still, adv = run_until_all_fooled(fooling_run, still, x, run_start, run_stop)
  fooled = active & (losses_lib.predict(clean_logits) == y) & ~still
  return adv, fooled


def apgd_rows(logits_fn, x, y, key, index, active, eps, run, *, norm="linf", loss="dlr-targeted", n_iter=100,
              n_restarts=1, n_target_classes=9, rho=0.75, eot_iter=1, use_largereps=False):
  """One (point, run) pair per row: row i does run ``run_i`` of ``apgd_masked`` for point x_i (r = target_rank *
  n_restarts + restart: the same target, per-example key and iterates as run r there). Returns (x_adv, fooled)
  per row, as ``apgd_masked`` does for one run.

  With the rows of every run of every point in one batch, AutoAttack runs all the targets of APGD-T as one
  program instead of one after another. Deterministic models only: a randomised model draws one key per call,
  which rows of different runs cannot share.
  """
  check_counts("APGD", n_iter=n_iter, n_restarts=n_restarts, eot_iter=eot_iter)
  check_run_indices("APGD rows", run, x, (int(n_target_classes) if loss in _TARGETED_LOSSES else 1) * int(n_restarts))
  return _apgd_rows_jit(logits_fn, x, y, key, index, active, eps, jnp.asarray(run, jnp.int32), norm=norm,
                        loss=loss, n_iter=int(n_iter), n_restarts=int(n_restarts),
                        n_target_classes=int(n_target_classes), rho=float(rho), eot_iter=int(eot_iter),
                        use_largereps=bool(use_largereps))


@functools.partial(jax.jit, static_argnames=("norm", "loss", "n_iter", "n_restarts", "n_target_classes", "rho",
                                             "eot_iter", "use_largereps"))
def _apgd_rows_jit(logits_fn, x, y, key, index, active, eps, run, *, norm, loss, n_iter, n_restarts,
                   n_target_classes, rho, eot_iter, use_largereps):
  model = model_with_key(logits_fn, False)
  ex_keys = fold_keys(indexed_keys(key, index), run)
  clean_logits = model(x, jax.random.fold_in(key, 2**31 - 1))
  tgt = None
  if loss in _TARGETED_LOSSES:
    targets = top_k_targets(clean_logits, n_target_classes)
    tgt = jnp.take_along_axis(targets, (run // n_restarts)[None], axis=0)[0]
  run_key = jax.random.fold_in(key, 0)  # feeds a randomised model's draws only; unused here
  if use_largereps:
    res = _largereps_run(model, x, y, tgt, ex_keys, run_key, eps, loss=loss, n_iter=n_iter, rho=rho,
                         eot_iter=eot_iter)
  else:
    res = _single_run(model, x, y, tgt, ex_keys, run_key, eps, norm=norm, loss=loss, n_iter=n_iter, rho=rho,
                      eot_iter=eot_iter)
  fooled = active & (losses_lib.predict(clean_logits) == y) & ~res.acc
  return select(fooled, res.x_best_adv, x), fooled


@functools.partial(jax.jit, static_argnames=("norm", "loss", "n_iter", "rho", "eot_iter", "randomized",
                                             "record_iterates"))
def _apgd_run_jit(logits_fn, x, y, key, index, eps, target, *, norm, loss, n_iter, rho, eot_iter, randomized,
                  record_iterates):
  model = model_with_key(logits_fn, randomized)
  return _single_run(model, x, y, target, fold_keys(indexed_keys(key, index), 0), jax.random.fold_in(key, 0),
                     eps, norm=norm, loss=loss, n_iter=n_iter, rho=rho, eot_iter=eot_iter,
                     record_iterates=record_iterates)


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------

def _prepare(logits_fn, x, y, eps, norm, loss, randomized, n_target_classes=None):
  if loss not in _LOSSES:
    raise ValueError(f"unknown APGD loss {loss!r}; expected one of {_LOSSES}")
  min_k = 4 if loss == "dlr-targeted" else 3 if loss == "dlr" else 2
  what = {"dlr": "APGD with the DLR loss", "dlr-targeted": "APGD-T (targeted DLR loss)"}.get(loss, "APGD")
  norm, eps_v, k = prepare_linf_or_l2(logits_fn, x, y, eps, norm, "APGD", min_k, what, randomized,
                                      norms=("linf", "l2", "l1"))
  if n_target_classes is not None:
    check_n_target_classes(n_target_classes, k, "APGD-T")
  return norm, eps_v, k


def apgd(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", loss: str = "ce", n_iter: int = 100,
         n_restarts: int = 1, rho: float = 0.75, eot_iter: int = 1, randomized: bool = False,
         best_loss: bool = False, use_largereps: bool = False) -> Array:
  """Untargeted APGD (APGD-CE / APGD-DLR). Returns x_adv with the shape of x (B, ...).

  Args:
    logits_fn: ``x -> logits (B, K)``, or ``(x, key) -> logits`` with ``randomized=True``.
    x: (B, ...) float in [0, 1]; y: (B,) int labels; key: PRNG key.
    eps: scalar or (B,). norm: 'linf', 'l2' or 'l1' (APGD-L1, Croce & Hein 2021). loss: 'ce' or 'dlr' (K >= 3).
    n_iter: iterations N per run (static).
    n_restarts: runs on the still-robust points.
    rho: the oscillation threshold of the step-size halving (0.75).
    eot_iter: gradient draws averaged per step (Expectation over Transformation).
    best_loss: return the highest-loss point over restarts instead of the AutoAttack-style output
      (x_best_adv for fooled points, clean x for the rest).
    use_largereps: L1 only: each restart runs at 3 eps, 2 eps, eps (AutoAttack's L1 'standard' schedule).
  """
  if loss in _TARGETED_LOSSES:
    raise ValueError("use apgd_targeted for targeted losses")
  norm, eps_v, _ = _prepare(logits_fn, x, y, eps, norm, loss, randomized)
  adv, _ = apgd_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v,
                       norm=norm, loss=loss, n_iter=n_iter, n_restarts=n_restarts, rho=float(rho),
                       eot_iter=eot_iter, randomized=randomized, best_loss=best_loss, use_largereps=use_largereps)
  return adv


def apgd_targeted(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", n_iter: int = 100,
                  n_restarts: int = 1, n_target_classes: int = 9, rho: float = 0.75, eot_iter: int = 1,
                  randomized: bool = False, loss: str = "dlr-targeted", use_largereps: bool = False) -> Array:
  """APGD-T: targeted DLR, one full N-iteration run per target (the 2nd..(n+1)-th largest clean logits).

  Targets run in order on the points still robust; a point counts as fooled when misclassified (any class).
  Needs K >= 4 and n_target_classes <= K - 1. Returns x_adv (B, ...).
  """
  if loss not in _TARGETED_LOSSES:
    raise ValueError(f"apgd_targeted needs a targeted loss {_TARGETED_LOSSES}; got {loss!r}")
  norm, eps_v, _ = _prepare(logits_fn, x, y, eps, norm, loss, randomized, n_target_classes)
  adv, _ = apgd_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v,
                       norm=norm, loss=loss, n_iter=n_iter, n_restarts=n_restarts,
                       n_target_classes=n_target_classes, rho=float(rho), eot_iter=eot_iter,
                       randomized=randomized, use_largereps=use_largereps)
  return adv


def apgd_run(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", loss: str = "ce", n_iter: int = 100,
             rho: float = 0.75, eot_iter: int = 1, randomized: bool = False, target: Optional[Array] = None,
             record_iterates: bool = False) -> ApgdTrace:
  """One APGD run on every example (no restarts, no masking) with its diagnostic traces (``ApgdTrace``).

  For the targeted losses pass ``target`` (B,). The randomness matches the first restart of ``apgd`` with
  the same key.
  """
  norm, eps_v, _ = _prepare(logits_fn, x, y, eps, norm, loss, randomized)
  if (loss in _TARGETED_LOSSES) != (target is not None):
    raise ValueError("pass target exactly when the loss is targeted")
  return _apgd_run_jit(as_partial(logits_fn), x, y, key, jnp.arange(x.shape[0]), eps_v, target, norm=norm, loss=loss,
                       n_iter=n_iter, rho=float(rho), eot_iter=eot_iter, randomized=randomized,
                       record_iterates=record_iterates)


_NORMS = ("linf", "l2", "l1")

REGISTRY = {
    "apgd": AttackInfo(configured(apgd), norms=_NORMS,
                       summary="APGD, untargeted, loss 'ce' or 'dlr'; norm='l1' is APGD-L1 (Croce & Hein 2020, 2021)"),
    "apgd_ce": AttackInfo(configured(apgd, loss="ce"), norms=_NORMS,
                          summary="APGD on cross-entropy (Croce & Hein 2020; L1: 2021)"),
    "apgd_dlr": AttackInfo(configured(apgd, loss="dlr"), norms=_NORMS,
                           summary="APGD on the DLR loss (Croce & Hein 2020; L1: 2021)"),
    "apgd_t": AttackInfo(configured(apgd_targeted), norms=_NORMS,
                         own_targets="APGD-T runs one attack per target, the 2nd..(n+1)-th largest clean logits "
                                     "(n_target_classes), and keeps the first that succeeds; for one chosen target "
                                     "use a single-target attack, e.g. get_attack('pgd', eps=..., target=...)",
                         summary="APGD on the targeted DLR loss, top-k targets (Croce & Hein 2020; L1: 2021)"),
}
