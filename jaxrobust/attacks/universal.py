"""Universal PGD: one perturbation shared by a group of K inputs (TA-MOO's UNI task set, Bui et al. 2023;
in the spirit of Moosavi-Dezfooli et al. 2017, per group of K rather than per data set).

Consecutive examples form groups: group g is examples gK .. gK + K - 1 (as the reference's ``adv_uniper``).
Each group has one delta_g, optimised by PGD on the sum of its K losses (the thesis's "Uniform" baseline
``TAM:pgd.py::PGD_Linf_Uni``):

    delta_g <- Pi( delta_g + alpha * d_g ),  d_g = sign(grad_delta sum_k L(f(x_gk + delta_g), y_gk))  (Linf)

Pi is the eps-ball projection followed by the intersection of the members' boxes, [max_k -x_gk, min_k 1 - x_gk]
per pixel (the reference clips delta against each member's box in turn, which for intervals that all
contain 0 is the same set), so x_gk + delta_g lies in [0, 1] for every member and the perturbation is exactly
shared. Output: x_adv_gk = clip_[0,1](x_gk + delta_g); that final per-example clip only removes float rounding
(|x_adv - x - delta_g| at most a few ulps), so x_adv - x agrees within a group up to ~1e-7.

A last partial group (B not a multiple of K) has the B mod K remaining examples: it is padded with copies of
the last example whose losses are masked out (and whose boxes are that example's box, so nothing changes).

Arithmetic and keys make K = 1 *be* ``pgd``: the iterate is z_g = x_g1 + delta_g (the first member plus the
perturbation), updated exactly as PGD updates x_adv; member k is z_g + (x_gk - x_g1). Group g draws its
random start from fold_in(key, g) (or key[g] for a (G,) batch of per-group keys), so K = 1 with the same key
gives PGD's output bit for bit, and a batch of groups gives the same result as its halves with their keys.

``Groups`` / ``group_losses`` expose the (G, K) per-group loss matrix that the multi-objective attacks
(MOO, TA-MOO, MinMax on UNI) weight per group. One XLA program; no restarts, no early stop.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_logits, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys
from jaxrobust.attacks.registry import AttackInfo
from jaxrobust.types import Array, LogitsFn

UNIVERSAL_INITS = ("uniform", "none")


@dataclasses.dataclass(frozen=True)
class Groups:
  """B examples as G = ceil(B / K) groups of K (the last one padded).

  x: (G, K, ...) members; y: (G, K); valid: (G, K) bool, False on padding; ref: (G, ...) first member x_g1;
  offsets: (G, K, ...) x_gk - x_g1; low, high: (G, ...) the box of z = x_g1 + delta (every member in [0, 1]).
  """
  x: Array
  y: Array
  valid: Array
  ref: Array
  offsets: Array
  low: Array
  high: Array
  batch: int

  @property
  def size(self) -> int:
    return self.x.shape[1]

  def members(self, z: Array) -> Array:
    """(G, K, ...) points z_g + (x_gk - x_g1) (x_gk + delta_g), unclipped."""
    return z[:, None] + self.offsets

  def flatten(self, v: Array) -> Array:
    """(G, K, ...) -> (B, ...), the padding dropped."""
    return v.reshape((-1,) + v.shape[2:])[:self.batch]


def make_groups(x: Array, y: Array, group_size: int) -> Groups:
  """Consecutive groups of ``group_size``; the last partial group padded with copies of the last example."""
  k = int(group_size)
  if k < 1 or k != group_size:
    raise ValueError(f"group_size must be a positive integer; got {group_size}")
  b = x.shape[0]
  g = -(-b // k)
  index = jnp.minimum(jnp.arange(g * k), b - 1)
  xg = x[index].reshape((g, k) + x.shape[1:])
  yg = y[index].reshape((g, k))
  valid = (jnp.arange(g * k) < b).reshape((g, k))
  ref = xg[:, 0]
  offsets = xg - ref[:, None]
  low = ref - jnp.min(xg, axis=1)            # delta >= -x_gk for all k; K = 1: exactly 0
  high = 1.0 - (jnp.max(xg, axis=1) - ref)   # delta <= 1 - x_gk for all k; K = 1: exactly 1
  return Groups(xg, yg, valid, ref, offsets, low, high, b)


def group_losses(logits_fn: LogitsFn, groups: Groups, z: Array, loss="ce", ref_logits: Array | None = None
                 ) -> tuple[Array, Array]:
  """(losses (G, K), logits (G, K, C)) at the members z_g + (x_gk - x_g1); padding losses are 0.
  ``ref_logits`` (G, K, C): the clean logits, for losses that need them."""
  attack_loss = losses_lib.get_attack_loss(loss)
  pts = groups.members(z)
  flat = pts.reshape((-1,) + pts.shape[2:])
  logits = logits_fn(flat)
  yf = groups.y.reshape(-1)
  check_logits(logits, yf)
  ref = None if ref_logits is None else ref_logits.reshape((-1,) + ref_logits.shape[2:])
  per = attack_loss(logits, yf, ref).reshape(groups.y.shape)
  per = jnp.where(groups.valid, per, jnp.zeros((), per.dtype))
  return per, logits.reshape(groups.y.shape + logits.shape[1:])


def project_group(z: Array, groups: Groups, eps, norm) -> Array:
  """Ball projection of delta = z - x_g1, then the intersection of the members' boxes."""
  return jnp.clip(threat.project(z, groups.ref, eps, norm), groups.low, groups.high)


def universal_pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size, steps: int, group_size: int,
                  norm="linf", loss="ce", init: str = "uniform", targeted: bool = False, group_reduce: str = "sum",
                  unroll=None) -> Array:
  """One perturbation per group of ``group_size`` consecutive examples. Returns x_adv (B, ...).

  Args:
    key: one key (group g uses fold_in(key, g)) or a (G,) batch of per-group keys; may be None with init='none'.
    eps, step_size: scalars or (G,) per group.
    steps: iterations (static). group_size: K (static).
    norm: 'linf', 'l2' or 'l1' (the ball of delta_g).
    loss: an attack loss name or callable (``losses.get_attack_loss``); 'ce' as TA-MOO's UNI run script.
    init: 'uniform' (PGD's random start around the group's first member, then the group box) or 'none'.
    targeted: minimise the loss towards y.
    group_reduce: 'sum' (the spec) or 'mean' over the group's real members (a sign step does not see it;
      an L2 / L1 step does not either, since the direction is normalised).
  """
  validate(x, y, eps=None, step_size=None)
  if init not in UNIVERSAL_INITS:
    raise ValueError(f"universal_pgd init must be one of {UNIVERSAL_INITS}; got {init!r}")
  if group_reduce not in ("sum", "mean"):
    raise ValueError(f"group_reduce must be 'sum' or 'mean'; got {group_reduce!r}")
  if int(steps) != steps or steps < 0:
    raise ValueError(f"need steps >= 0; got {steps}")
  norm = threat.canonical_norm(norm)
  groups = make_groups(x, y, group_size)
  n_groups = groups.ref.shape[0]
  with jax.ensure_compile_time_eval():
    for name, v in (("eps", eps), ("step_size", step_size)):
      threat.check_eps(v, n_groups, name=name)
  sign = -1.0 if targeted else 1.0
  attack_loss = losses_lib.get_attack_loss(loss)
  ref_logits = None
  if attack_loss.needs_reference:
    flat = groups.x.reshape((-1,) + x.shape[1:])
    z0 = jax.lax.stop_gradient(logits_fn(flat))
    ref_logits = z0.reshape(groups.y.shape + z0.shape[1:])
  count = jnp.maximum(jnp.sum(groups.valid, axis=1), 1).astype(x.dtype)

  def objective(z):
    per, logits = group_losses(logits_fn, groups, z, attack_loss, ref_logits)
    per_group = jnp.sum(per, axis=1)
    if group_reduce == "mean":
      per_group = per_group / count
    return sign * jnp.sum(per_group), (per, logits)

  grad_fn = jax.grad(objective, has_aux=True)
  alpha = as_bcast(step_size, groups.ref)

  def step(_, z):
    g, _ = grad_fn(z)
    return project_group(z + alpha * threat.normalize_gradient(g, norm), groups, eps, norm)

  if init == "none":
    z0 = groups.ref
  else:
    keys = example_keys(key, n_groups)
    z0 = random_init(keys, groups.ref, eps, norm, init)
    z0 = jnp.clip(z0, groups.low, groups.high)  # random_init already clips to [0, 1]: a no-op when K = 1
  z = jax.lax.fori_loop(0, steps, step, z0, unroll=resolve_unroll(unroll, steps))
  return threat.clip_box(groups.flatten(groups.members(z))).astype(x.dtype)


def _universal_factory(*, eps, step_size=None, steps=10, group_size=4, **kw):
  if step_size is None:  # PGD's default alpha = 2.5 eps / T
    step_size = 2.5 * eps / max(steps, 1)

  def attack(logits_fn, x, y, key):
    return universal_pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, group_size=group_size,
                         **kw)
  return attack


REGISTRY = {
    "universal_pgd": AttackInfo(_universal_factory, norms=("linf", "l2", "l1"), forwards_to=(universal_pgd,),
                                summary="PGD on one perturbation shared by each group of group_size consecutive "
                                        "inputs (TA-MOO's UNI 'Uniform'; Moosavi-Dezfooli et al. 2017)"),
}
