"""ImageClassifier: input checks + in-model normalisation + backbone + head.

Every model ``get_model`` builds is one of these, so they share one calling convention::

  logits = module.apply(variables, x, train=False)                        # (B, K) or (B, 1)
  out = module.apply(variables, x, return_features=True)                  # ModelOutput
  logits, updates = module.apply(variables, x, train=True, mutable=['batch_stats'])

Parameters live at ``params['backbone']`` and ``params['head']``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import Dtype, check_image_batch, normalise
from jaxrobust.models.heads import make_head
from jaxrobust.types import Array, ModelOutput


class ImageClassifier(nn.Module):
  """x (B, H, W, C) float in [0, 1] -> logits (B, K), or ModelOutput(logits, features (B, D)).

  backbone: a module mapping normalised images (B, H, W, C) to penultimate features (B, D),
    called as ``backbone(x, train=train)``.
  mean/std: per-channel tuples (or None for identity), applied first: (x - mean) / std.
  cosine_normalize_features: cosine head only; False gives SPAT's ``normalize=False`` logits
    (use ``module.clone(cosine_normalize_features=False)`` with the same variables).
  projection_head: 'none', 'linear' (Dense(projection_dim) with bias) or 'mlp' (Dense(200) -> ReLU ->
    Dense(projection_dim), no biases): the projection heads p1 / p2 of ASCL (Bui et al. 2021, App. C.1),
    read only by contrastive losses through ``ModelOutput.projection``; parameters at params['projection'].
  """
  backbone: nn.Module
  num_classes: int = 10
  head: str = "linear"
  mean: Optional[Tuple[float, ...]] = None
  std: Optional[Tuple[float, ...]] = None
  dtype: Dtype = jnp.float32
  cosine_normalize_features: bool = True
  projection_head: str = "none"
  projection_dim: int = 128

  @nn.compact
  def __call__(self, x: Array, train: bool = False,
               return_features: bool = False) -> Union[Array, ModelOutput]:
    check_image_batch(x)
    x = normalise(x.astype(jnp.float32), self.mean, self.std).astype(self.dtype)
    # Heads run in float32 whatever the backbone dtype: losses are sensitive to logit precision.
    features = self.backbone(x, train=train).astype(jnp.float32)
    logits = make_head(self.head, self.num_classes,
                       cosine_normalize_features=self.cosine_normalize_features)(features)
    projection = None
    # Created at init even when only logits are asked for, so that the variables hold its params.
    if self.projection_head != "none" and (return_features or self.is_initializing()):
      projection = ProjectionHead(self.projection_head, self.projection_dim, name="projection")(features)
    if return_features:
      return ModelOutput(logits, features, projection)
    return logits


PROJECTION_HEADS = ("none", "linear", "mlp")


class ProjectionHead(nn.Module):
  """(B, D) features -> (B, P): 'linear' z W + b, or 'mlp' relu(z W1) W2 (hidden 200, no biases)."""
  kind: str
  dim: int = 128

  @nn.compact
  def __call__(self, features: Array) -> Array:
    if self.kind == "linear":
      return nn.Dense(self.dim, name="dense")(features)
    if self.kind == "mlp":
      hidden = nn.relu(nn.Dense(200, use_bias=False, name="dense1")(features))
      return nn.Dense(self.dim, use_bias=False, name="dense2")(hidden)
    raise ValueError(f"projection_head must be one of {PROJECTION_HEADS}; got {self.kind!r}")
