"""Standard (natural) training: L = mean_i CE(f(x_i), y_i) (BCE for single-logit models)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxrobust.methods.base import LossAux, Method, accuracy, masked_mean
from jaxrobust.methods.common import classification_loss


def make_standard(**unused) -> Method:
  if unused:
    raise ValueError(f"standard training takes no hyper-parameters; got {sorted(unused)}")

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    out, batch_stats = ctx.forward(params, batch_stats, batch["image"])
    per_ex = classification_loss(out.logits, batch["label"])
    value = masked_mean(per_ex, batch.get("mask"))
    metrics = {"loss": value, "acc": accuracy(out.logits, batch["label"])}
    return value, LossAux(batch_stats, method_state, metrics)

  return Method(name="standard", loss=loss, attack=None)


REGISTRY = {"standard": make_standard}
