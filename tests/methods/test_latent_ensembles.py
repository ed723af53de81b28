"""ADR and ASCL on an ensemble act on each member's own latents: the latent term is the mean of the members'."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import models
from jaxrobust.methods import adr, ascl
from jaxrobust.types import ModelOutput

X = jax.random.uniform(jax.random.key(0), (12, 8, 8, 1))
Y = jnp.arange(12) % 3


def _outputs():
  module = models.get_model("mlp", 3, members=2, hidden_sizes=(8,))
  v = models.init_model(module, jax.random.key(0), X.shape[1:])
  out_nat = module.apply(v, X, return_features=True)
  out_adv = module.apply(v, jnp.clip(X + 0.1 * jnp.sign(jax.random.normal(jax.random.key(1), X.shape)), 0, 1),
                         return_features=True)
  return out_nat, out_adv


def _member(out, m):
  return ModelOutput(out.member_logits[m], out.member_features[m])


def test_adr_compactness_is_the_mean_over_members():
  out_nat, out_adv = _outputs()
  terms = adr.adr_terms(out_nat, out_adv, Y, 3)
  per = [adr.adr_terms(_member(out_nat, m), _member(out_adv, m), Y, 3) for m in range(2)]
  for k in ("lc", "gb"):
    np.testing.assert_allclose(terms[k], (per[0][k] + per[1][k]) / 2, rtol=1e-6)
  np.testing.assert_allclose(terms["smt"], adr.adr_terms(ModelOutput(out_nat.logits, out_nat.features),
                                                         ModelOutput(out_adv.logits, out_adv.features), Y, 3)["smt"])


@pytest.mark.parametrize("strategy", ["leaked", "soft"])
def test_ascl_contrastive_is_the_mean_over_members(strategy):
  out_nat, out_adv = _outputs()
  method = ascl.make_ascl(strategy=strategy)

  def ctx_for(outs):  # the clean batch X gives the clean outputs, anything else the adversarial ones
    from tests.methods.method_harness import identity_ctx
    return identity_ctx(num_classes=3)._replace(forward=lambda p, bs, x: ((outs[0] if x is X else outs[1]), bs))
  batch = {"image": X, "label": Y}
  _, aux = method.loss({}, {}, batch, X + 0.0, None, (), None, ctx_for((out_nat, out_adv)))
  per = [ascl.contrastive_loss(out_nat.member_features[m], out_adv.member_features[m], Y,
                               out_nat.member_logits[m].argmax(-1), out_adv.member_logits[m].argmax(-1),
                               strategy=strategy).loss for m in range(2)]
  np.testing.assert_allclose(aux.metrics["loss_scl"], (per[0] + per[1]) / 2, rtol=1e-6)
