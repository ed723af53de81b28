"""Adversarial training of an ensemble against a multi-objective attacker (Bui et al. 2023, TMLR, section 4.2
and App. D.2: TA-MOO-AT and its PGD / MinMax / MOO baselines).

    p_en(z) = (1/M) sum_m softmax(f_m(z))                      (the ensemble model's prediction)
    L = alpha * mean_i CE(log p_en(x_i), y_i) + beta * mean_i CE(log p_en(x_adv_i), y_i)      (alpha = beta = 1)

CE of log p_en is -log((1/M) sum_m p^m_y): the ensemble model's logits are log p_en (``models.ensemble``).
The attacker:

  'pgd'      PGD on the ensemble prediction log p_en (the thesis's PGD-AT; the reference's ``PGD_Linf``)
  'uniform'  PGD on the sum of member losses (``PGD_Linf_ENS``: TA-MOO's Uniform weighting)
  'minmax'   MinMax (Wang et al. 2021) on the M members (``attacks.moo``, tasks 'ens')
  'mgda'     MOO / MGDA (Sener & Koltun 2018) on the members
  'tamoo'    TA-MOO (Bui et al. 2023, Algorithm 1) on the members

each Linf with eps 8/255, step 2/255 and 10 steps (the thesis; the run scripts use 20 for MOO / TA-MOO).
``attack_bn``: the reference runs the MinMax / MOO / TA-MOO attackers with the models in train mode (batch
statistics) and PGD in eval mode; 'auto' does that, 'eval' / 'train' force one for all.
"""

from __future__ import annotations

from jaxrobust.attacks.moo import moo_attack
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean, stop
from jaxrobust.methods.common import ATTACK_BN_MODES, check_threat, classification_loss

ATTACKERS = ("pgd", "uniform", "minmax", "mgda", "tamoo")


def require_ensemble(out, method: str):
  """The members' logits of an ensemble's forward output; a clear error for a single model."""
  if getattr(out, "member_logits", None) is None:
    raise ValueError(f"method {method!r} trains an ensemble: build the model with members, e.g. model.members=3 "
                     "(or model.name=ensemble model.members='(\"resnet18\",\"mobilenet\")' for different "
                     "architectures)")
  return out.member_logits


def make_ensemble_at(*, attacker: str = "tamoo", eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
                     alpha: float = 1.0, beta: float = 1.0, attack_bn: str = "auto", init: str = "uniform",
                     inner_steps: int = 10, inner_lr: float = 0.005, tamoo_lambda: float = 100.0,
                     entropy_bonus: float = 0.0, minmax_gamma: float = 3.0, name: str = "ensemble_at") -> Method:
  """TA-MOO-AT and its baselines; see the module docstring. inner_steps .. minmax_gamma: ``attacks.moo``'s."""
  if attacker not in ATTACKERS:
    raise ValueError(f"unknown ensemble attacker {attacker!r}; expected one of {ATTACKERS}")
  if attack_bn not in ATTACK_BN_MODES + ("auto",):
    raise ValueError(f"attack_bn must be 'auto' or one of {ATTACK_BN_MODES}; got {attack_bn!r}")
  if alpha < 0 or beta < 0 or alpha + beta == 0:
    raise ValueError(f"{name} needs alpha, beta >= 0, not both 0; got {alpha}, {beta}")
  check_threat(name, eps, step_size, steps)
  bn = attack_bn if attack_bn != "auto" else ("eval" if attacker == "pgd" else "train")
  weighting = "uniform" if attacker == "uniform" else attacker

  def member_logits_fn(params, batch_stats, ctx):
    if bn == "eval":
      return lambda x: require_ensemble(ctx.eval_forward(params, batch_stats, x), name)
    # batch statistics of the attacked batch; the running statistics are not updated by the attack
    return lambda x: require_ensemble(ctx.forward(params, batch_stats, x)[0], name)

  def attack(params, batch_stats, batch, key, method_state, ctx):
    x, y = batch["image"], batch["label"]
    if attacker == "pgd":
      if bn == "eval":
        logits_fn = lambda z: ctx.eval_forward(params, batch_stats, z).logits  # noqa: E731
      else:
        logits_fn = lambda z: ctx.forward(params, batch_stats, z)[0].logits  # noqa: E731
      x_adv = pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, steps=steps, init=init)
    else:
      x_adv = moo_attack(member_logits_fn(params, batch_stats, ctx), x, y, key, eps=eps, step_size=step_size,
                         steps=steps, tasks="ens", weighting=weighting, init=init, inner_steps=inner_steps,
                         inner_lr=inner_lr, tamoo_lambda=tamoo_lambda, entropy_bonus=entropy_bonus,
                         minmax_gamma=minmax_gamma)
    return stop(x_adv), None

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    y, mask = batch["label"], batch.get("mask")
    total, metrics = 0.0, {}
    if alpha > 0:
      out, batch_stats = ctx.forward(params, batch_stats, batch["image"])
      require_ensemble(out, name)
      total = alpha * masked_mean(classification_loss(out.logits, y), mask)
      metrics["acc"] = accuracy(out.logits, y)
    out_adv, batch_stats = ctx.forward(params, batch_stats, x_adv)
    member_logits = require_ensemble(out_adv, name)
    total = total + beta * masked_mean(classification_loss(out_adv.logits, y), mask)
    metrics["adv_acc"] = accuracy(out_adv.logits, y)
    fooled = (member_logits.argmax(-1) != y[None]).astype("float32")  # (M, B): task achieved
    metrics["a_all"] = fooled.min(axis=0).mean()
    metrics["a_avg"] = fooled.mean()
    metrics["loss"] = total
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name=name, loss=loss, attack=attack,
                hparams=dict(attacker=attacker, eps=eps, step_size=step_size, steps=steps, alpha=alpha, beta=beta,
                             attack_bn=attack_bn, init=init, inner_steps=inner_steps, inner_lr=inner_lr,
                             tamoo_lambda=tamoo_lambda, entropy_bonus=entropy_bonus, minmax_gamma=minmax_gamma))


def _preset(attacker: str, name: str):
  def factory(**kw) -> Method:
    if "attacker" in kw:
      raise ValueError(f"{name} fixes attacker={attacker!r}; use ensemble_at to choose another")
    return make_ensemble_at(attacker=attacker, name=name, **kw)
  factory.__signature__ = _signature_without("attacker", "name")
  factory.__doc__ = f"ensemble_at with attacker={attacker!r}."
  return factory


def _signature_without(*names):
  import inspect
  sig = inspect.signature(make_ensemble_at)
  return sig.replace(parameters=[p for p in sig.parameters.values() if p.name not in names])


def _ensemble_at(**kw) -> Method:
  return make_ensemble_at(**kw)


_ensemble_at.__signature__ = _signature_without("name")
_ensemble_at.__doc__ = make_ensemble_at.__doc__

REGISTRY = {
    "ensemble_at": _ensemble_at,
    "tamoo_at": _preset("tamoo", "tamoo_at"),
    "moo_at": _preset("mgda", "moo_at"),
    "minmax_at": _preset("minmax", "minmax_at"),
}
