"""Classifier heads: 'linear', 'single_logit' and the 'cosine' head of SPAT (Hou, Han, Li 2023).

Every head reads the penultimate features (B, D) and is created under the module name 'head',
so its parameters live at ``params['head']``.

Cosine head (SPAT, ``resnet.py``/``wrn.py`` with ``normalize=True``)::

  logits_j = <f / ||f||, w_j / ||w_j||> + b_j = cos(theta_j) + b_j     (no scale s; the loss applies it)

The reference renormalises the class weights *in place* on every forward
(``linear.weight.data = F.normalize(weight)``), i.e. a projection with no gradient through the
normalisation. We match it in two parts:

* the forward multiplies the kernel by ``stop_gradient(1 / ||w_j||)``: the logits always use unit
  class vectors, and the gradient reaching the kernel is the reference's gradient (exactly so while
  the kernel is unit-norm);
* ``project_cosine_head(params)`` renormalises the stored kernels; the train step calls it after
  every optimiser update, so the stored kernel is unit-norm at every forward as in the reference
  (weight decay and momentum then act on the same tensor the reference's SGD sees).
The kernel is initialised with unit-norm class vectors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.models.common import torch_default_kernel
from jaxrobust.types import Array, PyTree

HEADS = ("linear", "single_logit", "cosine")
COSINE_KERNEL = "cosine_kernel"
_EPS = 1e-12  # F.normalize's eps


def _inv_norm(v: Array, axis: int) -> Array:
  """1 / max(||v||, eps) along axis (keepdims), with a finite gradient at v = 0."""
  sq = jnp.sum(v * v, axis=axis, keepdims=True)
  return jax.lax.rsqrt(jnp.maximum(sq, _EPS * _EPS))


def unit_columns(v: Array) -> Array:
  """Normalises (..., D, K) kernels so every class vector v[..., :, j] has unit L2 norm."""
  return v * _inv_norm(v, axis=-2)


def _unit_column_init(key, shape, dtype=jnp.float32):
  return unit_columns(torch_default_kernel(key, shape, dtype))


class CosineHead(nn.Module):
  """(B, D) features -> (B, K) logits cos(theta_j) + b_j.

  normalize_features=False skips the feature normalisation (SPAT's ``normalize=False``, used only
  for clean accuracy): logits_j = <f, w_j/||w_j||> + b_j.
  """
  num_classes: int
  normalize_features: bool = True

  @nn.compact
  def __call__(self, features: Array) -> Array:
    dim = features.shape[-1]
    kernel = self.param(COSINE_KERNEL, _unit_column_init, (dim, self.num_classes), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.num_classes,), jnp.float32)
    # Projection semantics: the value is unit-norm, the gradient bypasses the normalisation.
    kernel = kernel * jax.lax.stop_gradient(_inv_norm(kernel, axis=0))
    if self.normalize_features:
      features = features * _inv_norm(features, axis=-1)
    return features @ kernel + bias


def make_head(head: str, num_classes: int, *, cosine_normalize_features: bool = True) -> nn.Module:
  """The head module named 'head'; 'single_logit' ignores num_classes and outputs (B, 1)."""
  if head == "linear":
    return nn.Dense(num_classes, name="head")
  if head == "single_logit":
    return nn.Dense(1, name="head")
  if head == "cosine":
    return CosineHead(num_classes, normalize_features=cosine_normalize_features, name="head")
  raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def project_cosine_head(params: PyTree) -> PyTree:
  """Renormalises every cosine-head kernel in a params (or variables) tree to unit class vectors.

  Pure; other leaves are returned unchanged. Works on stacked ensemble params too (the class
  vectors are always the columns of the last two axes). Call it on the params after each
  optimiser update -- not on optimiser state, whose moment trees reuse the 'cosine_kernel' name.
  """
  def project(path, leaf):
    if path and getattr(path[-1], "key", None) == COSINE_KERNEL:
      return unit_columns(leaf)
    return leaf
  return jax.tree_util.tree_map_with_path(project, params)
