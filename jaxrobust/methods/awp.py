"""Adversarial weight perturbation (Wu, Xia, Wang 2020, NeurIPS), as ``csdongxian/AWP`` ``utils_awp.py`` computes it.

After the input attack, with L(theta) the base method's training loss at the fixed x'::

    proxy  = theta - eta_p grad_theta(-L(theta))            one SGD step on -L (lr eta_p, no weight decay)
    Delta  = proxy - theta = eta_p grad_theta L(theta)
    v_l    = gamma ||w_l|| Delta_l / (||Delta_l|| + 1e-20)   per weight tensor w_l (Frobenius norms)
    update with g = grad_theta L(theta + sg(v)),  i.e. the gradient at the perturbed point applied to theta

so ||v_l|| = gamma ||w_l|| whatever eta_p (eta_p only matters through the 1e-20). Weight tensors are
the reference's "'weight' in name and dim > 1": Flax leaves named 'kernel' (Dense, Conv),
'cosine_kernel' and 'embedding' with ndim > 1; BatchNorm scale/bias and all biases get v = 0.
The reference perturbs, steps, restores (w <- w + v; opt.step(); w <- w - v), which is the same
update except that its weight decay sees w + v; here decay (in the optax chain) sees w.
The proxy runs the base loss in train mode (as ``proxy.train()``), and its BN statistics are
discarded (the reference's proxy is a separate model). v is computed in the attack phase, so it
is a constant of the loss by construction.

Warm-up: AWP applies when floor(ctx.epoch) + 1 >= ``warmup`` (the TRADES-AWP script tests
``epoch >= awp_warmup`` with 1-indexed epochs), read through ``lax.cond`` on the traced epoch:
no recompilation, and no proxy gradient is computed during warm-up.

* ``awp_at``: base ``pgd_at`` (mix 1: CE on x', PGD-10, eps 8/255, alpha 2/255, uniform start),
  gamma 0.01, eta_p 0.01, warm-up 0 (AT-AWP / UDR defaults).
* ``awp_trades``: base ``trades`` with the TRADES-AWP script's eps 8/255, alpha 2/255, 10 steps,
  beta 6; gamma 0.005, eta_p 0.1 (= the model lr), warm-up 10.
Other keyword arguments are forwarded to the base method's factory.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxrobust.methods.base import LossAux, Method, accuracy, stop

WEIGHT_LEAF_NAMES = ("kernel", "cosine_kernel", "embedding")
_EPS = 1e-20


def _leaf_name(path) -> str:
  if not path:
    return ""
  last = path[-1]
  return str(getattr(last, "key", getattr(last, "name", getattr(last, "idx", ""))))


def is_weight_leaf(path, leaf, names: Sequence[str] = WEIGHT_LEAF_NAMES) -> bool:
  """True for the tensors AWP perturbs: named like a weight and of rank > 1."""
  return _leaf_name(path) in names and getattr(leaf, "ndim", 0) > 1


def awp_scale(w, delta, gamma):
  """v = gamma ||w|| delta / (||delta|| + 1e-20) (``diff_in_weights`` times gamma)."""
  return gamma * jnp.linalg.norm(w.ravel()) * delta / (jnp.linalg.norm(delta.ravel()) + _EPS)


def awp_perturbation(loss_of_params: Callable, params, gamma: float, proxy_lr: float = 0.01, *,
                     has_aux: bool = False, names: Sequence[str] = WEIGHT_LEAF_NAMES):
  """The AWP perturbation v (same tree as params; zeros off the weight tensors), as a constant.

  loss_of_params: params -> scalar loss (or (loss, aux) with has_aux) that the weights ascend.
  Pure; reusable by any method (e.g. UDR-AWP) that can write its loss as a function of params.
  """
  grads = jax.grad(loss_of_params, has_aux=has_aux)(params)
  if has_aux:
    grads = grads[0]

  def per_leaf(path, w, g):
    if not is_weight_leaf(path, w, names):
      return jnp.zeros_like(w)
    # One SGD step of the proxy on -L: proxy - w = -proxy_lr * grad(-L) = proxy_lr * grad(L).
    delta = proxy_lr * g
    return awp_scale(w, delta, gamma).astype(w.dtype)

  return stop(jax.tree_util.tree_map_with_path(per_leaf, params, grads))


def add_perturbation(params, v):
  return jax.tree.map(lambda w, d: w + d, params, v)


def make_awp(base: Method, *, gamma: float, proxy_lr: float, warmup: float, name: str) -> Method:
  """Wraps any method with an input attack and a loss of params into its AWP version."""
  if gamma < 0:
    raise ValueError(f"{name} gamma (relative weight-perturbation size) must be >= 0; got {gamma}")
  if proxy_lr <= 0:
    raise ValueError(f"{name} proxy_lr must be > 0; got {proxy_lr}")
  if warmup < 0:
    raise ValueError(f"{name} warmup must be >= 0 epochs; got {warmup}")

  def attack(params, batch_stats, batch, key, method_state, ctx):
    base_key, proxy_key = jax.random.split(key)
    if base.attack is not None:
      x_adv, base_aux = base.attack(params, batch_stats, batch, base_key, method_state, ctx)
    else:
      x_adv, base_aux = None, None

    def proxy_loss(p):
      # Train-mode forward as the reference proxy; its BN statistics are thrown away.
      return base.loss(p, batch_stats, batch, x_adv, base_aux, method_state, proxy_key, ctx)[0]

    active = jnp.logical_and(jnp.floor(ctx.epoch) + 1.0 >= warmup, gamma > 0)
    v = jax.lax.cond(active, lambda p: awp_perturbation(proxy_loss, p, gamma, proxy_lr),
                     lambda p: jax.tree.map(jnp.zeros_like, p), params)
    clean_acc = accuracy(ctx.eval_forward(params, batch_stats, batch["image"]).logits, batch["label"])
    return x_adv, {"base": base_aux, "v": v, "clean_acc": clean_acc, "active": active}

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    # The gradient w.r.t. params of L(params + v) with v constant is the gradient at the perturbed point.
    perturbed = add_perturbation(params, attack_aux["v"])
    value, aux = base.loss(perturbed, batch_stats, batch, x_adv, attack_aux["base"], method_state, key, ctx)
    metrics = dict(aux.metrics)
    metrics.setdefault("acc", attack_aux["clean_acc"])
    metrics["loss"] = value
    metrics["awp_active"] = attack_aux["active"].astype(jnp.float32)
    metrics["awp_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(d)) for d in jax.tree.leaves(attack_aux["v"])))
    return value, LossAux(aux.batch_stats, aux.method_state, metrics)

  return Method(name=name, loss=loss, attack=attack, init_state=base.init_state,
                post_update=base.post_update,
                hparams=dict(base.hparams, gamma=gamma, proxy_lr=proxy_lr, warmup=warmup, base=base.name))


def make_awp_at(*, gamma: float = 0.01, proxy_lr: float = 0.01, warmup: float = 0, **base_kw) -> Method:
  from jaxrobust.methods.pgd_at import make_pgd_at
  return make_awp(make_pgd_at(**base_kw), gamma=gamma, proxy_lr=proxy_lr, warmup=warmup, name="awp_at")


def make_awp_trades(*, gamma: float = 0.005, proxy_lr: float = 0.1, warmup: float = 10,
                    **base_kw) -> Method:
  from jaxrobust.methods.trades import make_trades
  kw = dict(eps=8 / 255, step_size=2 / 255, steps=10, beta=6.0)
  kw.update(base_kw)
  return make_awp(make_trades(**kw), gamma=gamma, proxy_lr=proxy_lr, warmup=warmup, name="awp_trades")


REGISTRY = {"awp_at": make_awp_at, "awp_trades": make_awp_trades}
