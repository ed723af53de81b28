"""UDR's soft-ball attack (Bui et al. 2022, "A Unified Wasserstein Distributional Robustness Framework for
Adversarial Training", eqs. 11-16).

Code form (``attack_udr`` in UDR's ``train_cifar10_udr.py``, authoritative for its tables), per
pixel, with delta = x' - x and lam >= 0 the learned dual variable::

    delta_0 = clip(U(-eps, eps), -x, 1 - x)
    repeat k times:
        delta = delta + alpha * sign(grad_delta g(x + delta))              push (sign on grad g)
        delta = delta - lam * (alpha / tau) * (delta - sign(delta) eps) * 1{|delta| > eps}
                                                                           pull = eta lam grad c_hat
        delta = clip(delta, -x, 1 - x)                                     box

The pull is eta * lam * grad of the per-pixel cost c_hat(delta) = (1 / (2 tau)) sum_i (|delta_i| - eps)_+^2:
zero inside the Linf ball, so pixels with |delta_i| <= eps never move back. With lam = 1 and
tau = alpha (the code's tau) the pull maps every |delta_i| > eps exactly to eps, i.e. this *is*
PGD's hard clip; lam = 0 does not project at all; for 0 < lam < 1 the excess
e = (|delta| - eps)_+ obeys e_k <= (1 - lam) alpha / lam (1 - (1 - lam)^k) (tests/attacks/test_udr_attack.py
checks all three).

The pull is written (1 - c) delta + c sign(delta) eps on the excess pixels (c = lam alpha / tau),
which equals the code's delta - c (delta - sign(delta) eps) and is exact at c = 1. The result
lies in the [0, 1] box but, for lam < 1, *outside* the eps-ball: it is a training attack, not an
evaluation one, so it is not in the attack registry (the evaluator would reject its points).

``smoothed_cost`` is the paper's eq. 16 cost c_hat_X, used by the paper-form lambda update; it tends to
the hard-ball cost of eq. 13 as tau -> 0. ``paper_pull_l2`` is Algorithm 1's pull with that cost on
c_X = 1/2 ||x' - x||_2^2 (Appendix B's L2 cost): x <- x_inter - eta lam grad c_hat(x_inter, x), i.e. the
interpolation (1 - eta lam) x_inter + eta lam x inside the ball, with slope 1/tau outside; ``udr_pgd(pull='paper_l2')``
crafts with it.

``wrm_ascent`` is WRM's inner maximisation (Sinha, Namkoong & Duchi 2018, "Certifying Some Distributional
Robustness with Principled Adversarial Training", eq. 5 / Algorithm 1): gradient ascent from x on the Lagrangian
l(f(x'), y) - gamma ||x' - x||_2^2 with a fixed gamma (UDR's baseline, where lam is learned instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust.attacks.model_calls import loss_and_grad, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys
from jaxrobust.types import Array, LogitsFn


def soft_ball_pull(delta: Array, eps, lam, step_size, tau) -> Array:
  """delta - lam (alpha / tau) (delta - sign(delta) eps) 1{|delta| > eps}, per pixel (code form).

  eps, step_size: scalar or broadcastable to delta; lam, tau: scalars (lam may be traced).
  """
  with jax.ensure_compile_time_eval():
    for name, v in (("lam", lam), ("tau", tau)):
      if not isinstance(v, jax.core.Tracer) and jnp.ndim(v) == 0 and not float(v) >= 0:
        raise ValueError(f"soft_ball_pull {name} must be >= 0; got {v}")
    if not isinstance(tau, jax.core.Tracer) and jnp.ndim(tau) == 0 and float(tau) == 0:
      raise ValueError("soft_ball_pull tau must be > 0; got 0")
  c = jnp.asarray(lam, delta.dtype) * (jnp.asarray(step_size, delta.dtype) / jnp.asarray(tau, delta.dtype))
  eps = jnp.asarray(eps, delta.dtype)
  pulled = (1.0 - c) * delta + c * jnp.sign(delta) * eps
  return jnp.where(jnp.abs(delta) > eps, pulled, delta)


def smoothed_cost(c_x: Array, eps, tau) -> Array:
  """Paper eq. 16: c_hat = c_X inside the ball (c_X < eps), eps + (c_X - eps) / tau outside.

  Continuous at c_X = eps, slope 1/tau outside, and -> the hard-ball cost (inf outside) as tau -> 0.
  """
  with jax.ensure_compile_time_eval():
    if not isinstance(tau, jax.core.Tracer) and not float(tau) > 0:
      raise ValueError(f"smoothed_cost needs tau > 0; got {tau}")
  return jnp.where(c_x < eps, c_x, eps + (c_x - eps) / tau)


def paper_pull_l2(x_inter: Array, x: Array, eps, lam, step_size, tau) -> Array:
  """x_inter - eta lam grad_x' c_hat(x_inter, x) for c_X = 1/2 ||x' - x||_2^2 (per example; Bui et al. 2022,
  Algorithm 1 step 2b with eq. 16's cost, Appendix B's L2 cost).

  grad c_hat = (x' - x) where c_X < eps, (x' - x) / tau outside; so inside the ball the pull is
  (1 - eta lam) x_inter + eta lam x. eps: scalar or (B,) (the radius in c_X units); lam, tau: scalars.
  """
  delta = x_inter - x
  c_x = 0.5 * jnp.sum(jnp.square(delta).reshape(x.shape[0], -1), axis=1)
  eps_b = jnp.broadcast_to(jnp.asarray(eps, x.dtype), c_x.shape)
  slope = jnp.where(c_x < eps_b, 1.0, 1.0 / jnp.asarray(tau, x.dtype))
  return x_inter - as_bcast(step_size, x) * jnp.asarray(lam, x.dtype) * as_bcast(slope, x) * delta


PULLS = ("code", "paper_l2")


def udr_pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size, steps: int, lam,
            tau=None, loss="ce", unroll: int | bool | None = None, pull: str = "code") -> Array:
  """UDR's soft-ball sign-gradient attack (code form). Returns x + delta, in the [0, 1] box.

  Args:
    logits_fn: pure ``x -> logits``.
    x: (B, ...) images in [0, 1]; y: (B,) labels.
    key: one PRNG key (example i starts from fold_in(key, i), as ``pgd``) or (B,) keys.
    eps, step_size: scalar or (B,); the Linf radius of the soft ball and the push alpha.
    steps: k (static).
    lam: the dual variable, a scalar >= 0 (may be traced: it is training state).
    tau: the cost temperature; None = step_size (the code's choice; the paper suggests 2 alpha).
    loss: the craft loss g's x'-part, a name or ``loss(logits, y, ref_logits) -> (B,)``.
    pull: 'code' (the per-pixel hinge, ``soft_ball_pull``) or 'paper_l2' (``paper_pull_l2``: eq. 16's cost on
      1/2 ||x' - x||_2^2, eps in those units, eta = step_size).
  """
  if pull not in PULLS:
    raise ValueError(f"udr_pgd pull must be one of {PULLS}; got {pull!r}")
  validate(x, y, eps=eps, step_size=step_size)
  if int(steps) != steps or steps < 0:
    raise ValueError(f"udr_pgd needs steps >= 0; got {steps}")
  with jax.ensure_compile_time_eval():
    for name, v in (("lam", lam), ("tau", tau)):
      if v is not None and not isinstance(v, jax.core.Tracer):
        if jnp.ndim(v) != 0:
          raise ValueError(f"udr_pgd {name} must be a scalar; got shape {jnp.shape(v)}")
        if not float(v) >= 0 or (name == "tau" and float(v) == 0):
          raise ValueError(f"udr_pgd {name} must be {'> 0' if name == 'tau' else '>= 0'}; got {v}")
  alpha = as_bcast(step_size, x)
  eps_b = as_bcast(eps, x)
  tau_b = alpha if tau is None else jnp.asarray(tau, x.dtype)
  grad_fn, _ = loss_and_grad(logits_fn, loss, x, y)
  keys = example_keys(key, x.shape[0])
  # The same start as pgd(init='uniform'): x + U(-eps, eps), box-clipped.
  delta0 = random_init(keys, x, eps, "linf", "uniform") - x
  lo, hi = -x, 1.0 - x

  def step(_, delta):
    g, _ = grad_fn(x + delta)
    delta = delta + alpha * jnp.sign(g)
    if pull == "code":
      delta = soft_ball_pull(delta, eps_b, lam, alpha, tau_b)
    else:
      delta = paper_pull_l2(x + delta, x, eps, lam, step_size, alpha if tau is None else tau) - x
    return jnp.clip(delta, lo, hi)

  delta = jax.lax.fori_loop(0, steps, step, delta0, unroll=resolve_unroll(unroll, steps))
  return jnp.clip(x + delta, 0.0, 1.0)


def mean_abs_perturbation(x_adv: Array, x: Array) -> Array:
  """(B,) per-example mean |x' - x| over pixels: the code's ``mynorm(order=1)`` statistic for lam."""
  if x_adv.shape != x.shape:
    raise ValueError(f"mean_abs_perturbation needs x_adv and x of the same shape; got {x_adv.shape} and {x.shape}")
  d = jnp.abs(x_adv - x).reshape(x.shape[0], -1)
  return jnp.mean(d, axis=1)


def wrm_ascent(logits_fn: LogitsFn, x: Array, y: Array, *, gamma: float, step_size: float, steps: int,
               loss="ce", unroll: int | bool | None = None) -> Array:
  """WRM's inner maximisation (Sinha et al. 2018): from x' = x, ``steps`` gradient-ascent steps
  x' <- clip_[0,1](x' + step_size (grad l(f(x'), y) - 2 gamma (x' - x))) on l - gamma ||x' - x||_2^2.

  No ball: the transport cost alone keeps x' near x (gamma -> inf gives x' = x; gamma = 0 is unconstrained
  ascent). Deterministic (no random start). x: (B, ...) in [0, 1]; y: (B,). Returns x' (B, ...).
  """
  validate(x, y, step_size=step_size)
  if not gamma >= 0:
    raise ValueError(f"wrm_ascent gamma (the transport-cost multiplier) must be >= 0; got {gamma}")
  if int(steps) != steps or steps < 0:
    raise ValueError(f"wrm_ascent needs an integer steps >= 0; got {steps}")
  grad_fn, _ = loss_and_grad(logits_fn, loss, x, y)
  eta = as_bcast(step_size, x)

  def step(_, xa):
    g, _ = grad_fn(xa)
    return jnp.clip(xa + eta * (g - 2.0 * gamma * (xa - x)), 0.0, 1.0)

  return jax.lax.fori_loop(0, int(steps), step, x, unroll=resolve_unroll(unroll, int(steps)))


def wrm_objective(logits_fn: LogitsFn, x_adv: Array, x: Array, y: Array, gamma: float, loss="ce") -> Array:
  """(B,) the WRM Lagrangian l(f(x'), y) - gamma ||x' - x||_2^2 per example."""
  _, objective = loss_and_grad(logits_fn, loss, x, y)
  per_ex = objective(x_adv)[1][0]
  return per_ex - gamma * jnp.sum(jnp.square(x_adv - x).reshape(x.shape[0], -1), axis=1)
