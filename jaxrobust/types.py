"""The small types every part of jaxrobust meets through.

Models are Flax modules, but attacks and losses only ever see pure functions:

* ``LogitsFn``: ``logits_fn(x) -> logits``. ``x`` is a float batch ``(B, H, W, C)`` in
  [0, 1] pixel space; ``logits`` is ``(B, K)`` (or ``(B, 1)`` / ``(B,)`` for single-logit
  binary models). Attacks take this closure so they work with any JAX model; ensembles
  are handled by ``jax.vmap`` over a function that builds the closure from stacked params.
* ``ApplyFn``: ``apply(params, x) -> logits``, the uncurried form used at jit boundaries
  (``params`` is any pytree, e.g. ``{'params': ..., 'batch_stats': ...}``).
* ``FeaturesFn``: ``features_fn(x) -> ModelOutput`` for methods that need latent features.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any

LogitsFn = Callable[[Array], Array]
ApplyFn = Callable[[PyTree, Array], Array]


class ModelOutput(NamedTuple):
  """What every jaxrobust model returns when asked for features.

  logits: (B, K) float, or (B, 1) for single-logit heads.
  features: (B, D) penultimate (latent) features, before the classifier head.
  projection: (B, P) the features through a projection head for contrastive losses (the head does
    not feed the logits), or None for models without one.
  member_logits: (M, B, K) logits of each member of an ensemble (``models.ensemble``), else None.
  member_features: (M, B, D) latents of each member (a tuple when the members' widths differ), else None.
  """
  logits: Array
  features: Array
  projection: Array | None = None
  member_logits: Array | None = None
  member_features: Array | tuple | None = None


FeaturesFn = Callable[[Array], ModelOutput]
