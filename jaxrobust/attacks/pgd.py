"""PGD / BIM (Madry et al. 2018; Kurakin et al. 2016) for Linf, L2 and L1 balls.

    x_0     = start(x)                                   (uniform / normal / none)
    x_{t+1} = clip_[0,1]( Pi_eps( x_t + alpha * d_t ) ),  d_t = sign(g_t) (Linf) or g_t / ||g_t||_2 (L2)
    g_t     = grad_x sum_i L(f(x_t)_i, y_i)              (minus the gradient when targeted)

Restarts keep, per example, the restart with the largest final loss (smallest when targeted).
With ``early_stop`` only examples that are still correctly classified are updated, so an
example once fooled stays fooled. The whole loop is one XLA program; ``eps`` and
``step_size`` may be scalars or per-example ``(B,)`` arrays.

Randomness is per example: example ``i`` draws its start from ``k_i = fold_in(key, i)``
(restart ``r > 0`` from ``fold_in(k_i, r)``). Passing a ``(B,)`` batch of keys instead of one
key uses ``k_i = key[i]`` directly, so an example gets the same start whichever batch it is
in (``example_keys(key, B)[i:i+1]`` reproduces row ``i`` of a batch attack).

Randomised models (EoT, Athalye et al. 2018): with ``randomized=True`` the model is ``logits_fn(x, keys)``,
keys a (B,) batch of per-example keys, and step t averages the gradient over ``eot_iter`` draws with keys
fold_in(fold_in(k_i, EOT_FOLD), t * eot_iter + e) (torchattacks' EOTPGD); ``transforms.transformed_model``
turns a model and EoT transformations into such a model. ``pgd_loop`` is the loop for any keyed objective
(``eot.eot_pgd``: the sum of the losses under several transformations).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrobust import threat
from jaxrobust.attacks.model_calls import (INITS, eot_gradient, fooled, keyed_loss_and_grad, loss_and_grad, random_init,
                                           resolve_unroll, validate)
from jaxrobust.attacks.per_example import as_bcast, example_keys, fold_keys, select
from jaxrobust.attacks.registry import AttackInfo
from jaxrobust.types import Array, LogitsFn

RESTART_SELECT = ("loss", "fooled")


def kurakin_steps(eps) -> int:
  """BIM's default T = floor(min(255 eps + 4, 1.25 * 255 eps)) (eps in [0, 1] pixel scale)."""
  return int(min(255 * float(eps) + 4, 1.25 * 255 * float(eps)))


# ----------------------------------------------------------------------------------------
# PGD
# ----------------------------------------------------------------------------------------

def pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size, steps: int,
        norm="linf", loss="ce", init: str = "uniform", init_scale: float = 0.001,
        restarts: int = 1, targeted: bool = False, early_stop: bool = False,
        unroll: int | bool | None = None, restart_select: str = "loss",
        randomized: bool = False, eot_iter: int = 1) -> Array:
  """Projected gradient descent. Returns x_adv with the shape and dtype of x.

  Args:
    logits_fn: pure ``x -> logits`` (``(x, keys) -> logits`` with ``randomized``).
    x: (B, ...) float images in [0, 1].
    y: (B,) int labels (targets when ``targeted``).
    key: one PRNG key (example i uses fold_in(key, i)) or a (B,) batch of per-example keys;
      may be None when init='none', restarts=1 and the model is not randomised.
    eps, step_size: scalar or (B,) per-example.
    steps: number of iterations T (static).
    norm: 'linf', 'l2' or 'l1'.
    loss: name in ``losses.ATTACK_LOSSES`` or ``loss(logits, y, ref_logits) -> (B,)``.
    init: 'uniform' (Madry random start), 'normal' (x + init_scale N(0,I)) or 'none' (BIM).
    restarts: number of random restarts (static); per example the max-loss restart is kept.
    targeted: minimise the loss towards y instead of maximising it.
    early_stop: freeze examples as soon as they are misclassified (reach the target).
    unroll: ``lax.fori_loop`` unroll factor; True = full, None (default) = 1.
    restart_select: 'loss' keeps the restart with the largest final loss (Rice et al.); 'fooled'
      prefers a restart that fools the model and breaks ties by loss.
    randomized: the model is randomised, ``logits_fn(x, keys)`` with keys a (B,) batch of per-example keys
      (e.g. ``transforms.transformed_model``): every step draws fresh keys.
    eot_iter: Expectation over Transformation (Athalye et al. 2018; torchattacks' EOTPGD): each step
      averages the loss gradient over eot_iter draws (static; only with ``randomized``); early stopping
      and restart selection read the last draw's logits / a fresh draw.
  """
  validate(x, y, eps=eps, step_size=step_size)
  if int(eot_iter) != eot_iter or eot_iter < 1:
    raise ValueError(f"need eot_iter >= 1; got {eot_iter}")
  if eot_iter > 1 and not randomized:
    raise ValueError("eot_iter > 1 averages over random draws of a randomised model: pass randomized=True "
                     "(e.g. with transforms.transformed_model), or use get_attack('eot_pgd', ...)")
  sign = -1.0 if targeted else 1.0
  if randomized:
    grad_fn, objective = keyed_loss_and_grad(logits_fn, loss, x, y, sign)
  else:
    grad_fn, objective = loss_and_grad(logits_fn, loss, x, y, sign)
    grad_fn, objective = _ignore_keys(grad_fn), _ignore_keys(objective)
  return pgd_loop(grad_fn, objective, x, y, key, eps=eps, step_size=step_size, steps=steps, norm=norm,
                  init=init, init_scale=init_scale, restarts=restarts, targeted=targeted, early_stop=early_stop,
                  unroll=unroll, restart_select=restart_select, keyed=randomized, eot_iter=int(eot_iter))


def _ignore_keys(fn):
  return lambda xa, keys: fn(xa)


EOT_FOLD = 0x7E07  # step keys: fold_in(fold_in(k_i, EOT_FOLD), t * eot_iter + e); the starts keep k_i


def pgd_loop(grad_fn, objective, x: Array, y: Array, key, *, eps, step_size, steps: int, norm="linf",
             init: str = "uniform", init_scale: float = 0.001, restarts: int = 1, targeted: bool = False,
             early_stop: bool = False, unroll=None, restart_select: str = "loss", keyed: bool = False,
             eot_iter: int = 1) -> Array:
  """PGD's loop for any objective: ``grad_fn(xa, keys) -> (g, (per_example_loss, logits))`` of the signed summed
  loss and ``objective(xa, keys)`` (its value, same aux), keys a (B,) batch of step keys (None unless ``keyed``).
  ``pgd`` and ``eot.eot_pgd`` are this loop with their objectives."""
  if int(steps) != steps or steps < 0 or restarts < 1:
    raise ValueError(f"need steps >= 0 and restarts >= 1; got steps={steps}, restarts={restarts}")
  if init not in INITS:
    raise ValueError(f"unknown PGD init {init!r}; expected one of {INITS}")
  if restart_select not in RESTART_SELECT:
    raise ValueError(f"unknown restart_select {restart_select!r}; expected one of {RESTART_SELECT}")
  norm = threat.canonical_norm(norm)
  sign = -1.0 if targeted else 1.0
  alpha = as_bcast(step_size, x)
  random = init != "none"
  keys = example_keys(key, x.shape[0]) if (random or restarts > 1 or keyed or key is not None) else None

  def step_keys(ks):
    return fold_keys(ks, EOT_FOLD) if keyed else None

  def one_run(ks):
    eot_keys = step_keys(ks)

    def step(t, xa):
      if keyed:
        g, (_, logits) = eot_gradient(grad_fn, xa, eot_keys, eot_iter, t * eot_iter)
      else:
        g, (_, logits) = grad_fn(xa, None)
      x_new = threat.project_ball_and_box(xa + alpha * threat.normalize_gradient(g, norm), x, eps, norm)
      if early_stop:  # freeze examples that are already fooled, so they stay fooled
        x_new = select(fooled(logits, y, targeted), xa, x_new)
      return x_new

    x0 = random_init(ks, x, eps, norm, init, init_scale)
    xa = jax.lax.fori_loop(0, steps, step, x0, unroll=resolve_unroll(unroll, steps))
    if init == "normal" and steps == 0:  # the unclipped normal start must still be a valid point
      xa = threat.project_ball_and_box(xa, x, eps, norm)
    return xa

  if restarts == 1:
    return one_run(keys)

  def score(xa, ks):
    score_keys = fold_keys(step_keys(ks), steps * eot_iter) if keyed else None
    _, (per_ex, logits) = objective(xa, score_keys)
    return sign * per_ex, fooled(logits, y, targeted)

  def restart_body(r, carry):
    best_x, best_loss, best_fooled = carry
    ks = fold_keys(keys, r)
    xa = one_run(ks)
    l, f = score(xa, ks)
    better = l >= best_loss
    if restart_select == "fooled":
      better = (f & ~best_fooled) | ((f == best_fooled) & better)
    return (select(better, xa, best_x), jnp.where(better, l, best_loss),
            jnp.where(better, f, best_fooled))

  # Start from "nothing found" (-inf loss) so that the run is traced once, inside the loop.
  nothing = (x, jnp.full((x.shape[0],), -jnp.inf, x.dtype), jnp.zeros((x.shape[0],), bool))
  best_x, _, _ = jax.lax.fori_loop(0, restarts, restart_body, nothing)
  return best_x


def _pgd_factory(*, eps, step_size=None, steps=10, norm="linf", **kw):
  if step_size is None:  # Madry's alpha = 2.5 eps / T, a common default when none is given
    step_size = 2.5 * eps / max(steps, 1)

  def attack(logits_fn, x, y, key):
    return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, norm=norm, **kw)
  return attack


def _bim_factory(*, eps, step_size=None, steps=10, **kw):
  """BIM: PGD without a random start. steps=0 uses Kurakin's rule (needs a concrete eps)."""
  if steps == 0:
    steps = kurakin_steps(eps)
  return _pgd_factory(eps=eps, step_size=step_size, steps=steps, init="none", **kw)


REGISTRY = {
    "pgd": AttackInfo(_pgd_factory, norms=("linf", "l2", "l1"), forwards_to=(pgd,),
                      summary="projected gradient descent (Madry et al. 2018)"),
    "pgd_linf": AttackInfo(functools.partial(_pgd_factory, norm="linf"), forwards_to=(pgd,), fixed=("norm",),
                           summary="PGD with norm='linf'"),
    "pgd_l2": AttackInfo(functools.partial(_pgd_factory, norm="l2"), norms=("l2",), forwards_to=(pgd,),
                         fixed=("norm",), summary="PGD with norm='l2'"),
    "bim": AttackInfo(_bim_factory, norms=("linf", "l2", "l1"), forwards_to=(pgd,), fixed=("init", "init_scale"),
                      summary="basic iterative method: PGD without a random start (Kurakin et al. 2016)"),
}
