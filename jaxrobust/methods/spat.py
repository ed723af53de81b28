"""SPAT (Hou, Han, Li 2023, AAAI): self-paced hard-class-pair reweighting (eqs. 9-15), as ``spat.py`` computes it.

The model must have the cosine head: c_j = cos(theta_j) + b_j (unit features, unit class vectors,
bias kept, **no** scale; the loss applies s). With one-hot mask M of y::

    g_ij     = (1 + m - c_ij) M_ij + (c_ij + m)(1 - M_ij)        (paper g^t = 1 - cos + beta, g^f = cos + beta)
    sp_ij    = s g_ij c_ij                                         (g not detached, as the code; ``detach``)
    L_acc    = (1/B) sum_i CE(sp_i, y_i)
    p = softmax(s c(x)),  q = softmax(s c(x')),  kl_ij = p_ij (log p_ij - log q_ij)
    L_rob    = (1/B) sum_i sum_j kl_ij (kl_ij + n)  =  (1/B) sum_i [ n KL(p_i || q_i) + sum_j kl_ij^2 ]
    L        = L_acc + beta L_rob

Training attack (inference mode): x'_0 = x + 0.001 N(0, I), K sign steps maximising sum_i L_rob,i
itself (label-free, TRADES-style), Pi_eps and the [0, 1] box.

Paper -> code -> argument mapping (the paper's names collide with the code's)::

    paper s                      = code s     = ``s``      (paper default 5, code default 8: code wins)
    paper beta  (smoothing in g) = code m     = ``m``      (0.2)
    paper alpha (KL weight)      = code n     = ``n``      (0.2)
    paper lambda (trade-off)     = code beta  = ``beta``   (6)

Ablation switches (paper Table 2): ``self_paced=False`` sets g = 1 (L_acc = CE(s c, y),
the NCE); ``inc=False`` drops sum_j kl_ij^2 (L_rob = n KL). With both off, n = 1, s = 1 and an
unnormalised (linear-head) model, SPAT is TRADES with lambda = beta.

``post_update`` renormalises the cosine head after every optimiser step (the reference rewrites
``linear.weight.data = F.normalize(weight)`` on every forward: a projection, no gradient through
it). It uses ``jaxrobust.models.project_cosine_head``; if that is unavailable it falls back to
renormalising the class vectors (the columns, i.e. along the input axis) of every leaf named
'cosine_kernel' and of every 'kernel' inside a module named 'cosine_head'.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods.base import LossAux, Method, accuracy, logits_fn_for, masked_mean, stop
from jaxrobust.methods.common import check_threat, is_single_logit


def _check_multiclass(logits):
  if is_single_logit(logits):
    raise ValueError("SPAT needs a multi-class cosine head (logits (B, K), K >= 2); "
                     f"got single-logit output of shape {logits.shape}")


def sp_logits(c, y, *, s: float, m: float, detach: bool = False, self_paced: bool = True):
  """s g c with g_y = 1 + m - c_y and g_j = c_j + m (j != y); s c when self_paced is False."""
  if not self_paced:
    return s * c
  mask = jax.nn.one_hot(y, c.shape[1], dtype=c.dtype)
  g = (1.0 + m - c) * mask + (c + m) * (1.0 - mask)
  if detach:
    g = stop(g)
  return s * g * c


def spat_kl_elements(c, c_adv, s: float):
  """kl_ij = p_ij (log p_ij - log q_ij), p = softmax(s c), q = softmax(s c') (KLDivLoss 'none')."""
  logp = jax.nn.log_softmax(s * c, axis=-1)
  logq = jax.nn.log_softmax(s * c_adv, axis=-1)
  return jnp.exp(logp) * (logp - logq)


def spat_robust(c, c_adv, *, s: float, n: float, inc: bool = True):
  """Per-example sum_j kl_ij (kl_ij + n) (inc=False: n sum_j kl_ij)."""
  kl = spat_kl_elements(c, c_adv, s)
  if inc:
    return jnp.sum(kl * (kl + n), axis=-1)
  return n * jnp.sum(kl, axis=-1)


def _fallback_project_cosine_head(params):
  """Unit class vectors for 'cosine_kernel' leaves and 'kernel's under a 'cosine_head' module."""
  def project(path, leaf):
    names = [str(getattr(p, "key", getattr(p, "name", ""))) for p in path]
    is_cos = bool(names) and (names[-1] == "cosine_kernel"
                              or (names[-1] == "kernel" and "cosine_head" in names[:-1]))
    if is_cos and leaf.ndim >= 2:
      sq = jnp.sum(leaf * leaf, axis=-2, keepdims=True)
      return leaf * jax.lax.rsqrt(jnp.maximum(sq, 1e-24))  # F.normalize's eps 1e-12, squared
    return leaf
  return jax.tree_util.tree_map_with_path(project, params)


def project_cosine_head(params):
  """The models package's projection when present, else the fallback above (imported lazily:
  the models package may be written after this module)."""
  try:
    from jaxrobust.models import project_cosine_head as project
  except ImportError:
    project = _fallback_project_cosine_head
  return project(params)


def make_spat(*, eps: float = 0.031, step_size: float = 0.007, steps: int = 10, s: float = 8.0,
              m: float = 0.2, n: float = 0.2, beta: float = 6.0, detach: bool = False,
              self_paced: bool = True, inc: bool = True, norm: str = "linf") -> Method:
  if s <= 0:
    raise ValueError(f"spat scale s must be > 0; got {s}")
  if m < 0 or n < 0 or beta < 0:
    raise ValueError("spat needs m (paper beta), n (paper alpha), beta (paper lambda) >= 0; "
                     f"got {m}, {n}, {beta}")
  check_threat("spat", eps, step_size, steps)

  def robust_loss(logits, y, ref_logits):
    return spat_robust(ref_logits, logits, s=s, n=n, inc=inc)
  # pgd() computes the clean logits once (inference mode).
  attack_loss = losses_lib.AttackLoss(robust_loss, needs_reference=True)

  def attack(params, batch_stats, batch, key, method_state, ctx):
    logits_fn = logits_fn_for(ctx, params, batch_stats)
    x_adv = pgd(logits_fn, batch["image"], batch["label"], key, eps=eps, step_size=step_size,
                steps=steps, norm=norm, loss=attack_loss, init="normal")
    return stop(x_adv), None

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    out_nat, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    c, c_adv = out_nat.logits, out_adv.logits
    _check_multiclass(c)
    logp = jax.nn.log_softmax(sp_logits(c, y, s=s, m=m, detach=detach, self_paced=self_paced), axis=-1)
    l_acc = masked_mean(-jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1)[:, 0], mask)
    l_rob = masked_mean(spat_robust(c, c_adv, s=s, n=n, inc=inc), mask)
    total = l_acc + beta * l_rob
    metrics = {"loss": total, "loss_natural": l_acc, "loss_robust": l_rob,
               "acc": accuracy(c, y), "adv_acc": accuracy(c_adv, y)}
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="spat", loss=loss, attack=attack, post_update=project_cosine_head,
                hparams=dict(eps=eps, step_size=step_size, steps=steps, s=s, m=m, n=n, beta=beta,
                             detach=detach, self_paced=self_paced, inc=inc, norm=norm))


REGISTRY = {"spat": make_spat}
