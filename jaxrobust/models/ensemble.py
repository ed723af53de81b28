"""Ensembles as one model: M member classifiers whose prediction is the mean of their softmax probabilities.

    p_en(x) = (1/M) sum_m softmax(z_m(x)),   logits_en(x) = log p_en(x)

(Bui et al. 2021, AAAI, section 3 (CCE); Bui et al. 2023, TMLR, section 4 (TA-MOO): both average
probabilities, and attacks on the ensemble use log of that mean, which ``logits`` is: softmax(logits) = p_en,
so cross-entropy on it is -log p_en,y.) Single-logit members average sigmoids instead.

An ``Ensemble`` is a Flax module like every other model, so training, checkpoints, resume and sharding treat it
exactly as one model. Two kinds:

* homogeneous (``member`` + ``num_members``): M copies of one architecture, every variable stacked on a leading
  member axis (``params['member']``: leaves (M, ...)), initialised independently (member m from the m-th of
  M split keys). ``layout`` chooses how the member axis runs:
    'vmap'      one batched program (convolutions become grouped convolutions): the natural form on GPU/TPU;
    'unrolled'  the M member forwards unrolled in one program, each an ordinary convolution: fastest on CPU,
                where XLA's grouped convolutions are slow (BENCHMARKS.md, ensemble member axis);
    'scan'      a loop over members in one program (lax.scan): the least memory;
    'auto'      'unrolled' on CPU, 'vmap' elsewhere (resolved when traced).
  All layouts hold the same variables and give the same outputs (to float rounding).
* heterogeneous (``members``): a tuple of different architectures (TA-MOO's {R18, VGG16, GoogLeNet, EffNet}),
  variables at ``params['members_<m>']``.

Output with ``return_features=True``: ``ModelOutput(logits (B, K), features (B, sum_m D_m) the members'
latents side by side, member_logits (M, B, K), member_features (M, B, D) (a tuple for members of different
widths))``. ``member_inputs=True`` takes x of shape (M, B, ...) and runs member m on x[m] only (each member
attacked on its own examples in one program; gradients of a sum over members stay per member).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.types import Array, ModelOutput, PyTree

LAYOUTS = ("auto", "vmap", "unrolled", "scan")
COMBINE = ("mean_probs", "mean_logits")


def combine_member_logits(z: Array, mode: str = "mean_probs") -> Array:
  """(M, B, K) member logits -> (B, K) ensemble logits.

  mean_probs: log((1/M) sum_m softmax(z_m)) (log-mean-exp of log-probabilities, stable); for single-logit
    members ((M, B) or (M, B, 1)) logit((1/M) sum_m sigmoid(z_m)).
  mean_logits: (1/M) sum_m z_m.
  """
  if mode not in COMBINE:
    raise ValueError(f"unknown ensemble combination {mode!r}; expected one of {COMBINE}")
  if mode == "mean_logits":
    return jnp.mean(z, axis=0)
  m = z.shape[0]
  if z.ndim == 2 or (z.ndim == 3 and z.shape[-1] == 1):
    logp1 = jax.nn.logsumexp(jax.nn.log_sigmoid(z), axis=0) - jnp.log(m)
    logp0 = jax.nn.logsumexp(jax.nn.log_sigmoid(-z), axis=0) - jnp.log(m)
    return logp1 - logp0
  return jax.nn.logsumexp(jax.nn.log_softmax(z, axis=-1), axis=0) - jnp.log(m)


def resolve_layout(layout: str) -> str:
  if layout not in LAYOUTS:
    raise ValueError(f"unknown ensemble layout {layout!r}; expected one of {LAYOUTS}")
  if layout == "auto":
    return "unrolled" if jax.default_backend() == "cpu" else "vmap"
  return layout


class _MemberCall(nn.Module):
  """(carry, x) -> (carry, member(x)): the shape nn.scan needs; nn.vmap ignores the carry."""
  member: nn.Module
  train: bool = False

  @nn.compact
  def __call__(self, carry, x):
    return carry, self.member(x, train=self.train, return_features=True)


_AXES = dict(variable_axes={"params": 0, "batch_stats": 0}, split_rngs={"params": True, "dropout": True})


def _stacked_members(member: nn.Module, num_members: int, layout: str, train: bool, member_inputs: bool):
  if layout == "vmap":
    cls = nn.vmap(_MemberCall, in_axes=(None, 0 if member_inputs else None), out_axes=0,
                  axis_size=num_members, **_AXES)
  else:
    cls = nn.scan(_MemberCall, in_axes=0 if member_inputs else nn.broadcast, out_axes=0,
                  length=num_members, unroll=num_members if layout == "unrolled" else 1, **_AXES)
  # The same name under every layout, so every layout reads the same variables.
  return cls(member=member, train=train, name="members")


class Ensemble(nn.Module):
  """M classifiers as one model; see the module docstring.

  member / num_members: a homogeneous ensemble (variables stacked on a leading member axis).
  members: a heterogeneous ensemble (a tuple of modules); leave ``member`` None.
  layout: 'auto', 'vmap', 'unrolled' or 'scan' (homogeneous only; same variables and outputs).
  combine: 'mean_probs' (the papers') or 'mean_logits'.
  """
  member: nn.Module | None = None
  num_members: int = 1
  members: tuple = ()
  layout: str = "auto"
  combine: str = "mean_probs"

  @property
  def size(self) -> int:
    return len(self.members) if self.members else self.num_members

  @nn.compact
  def __call__(self, x: Array, train: bool = False, return_features: bool = False,
               member_inputs: bool = False):
    if (self.member is None) == (not self.members):
      raise ValueError("Ensemble needs exactly one of member (with num_members) or members")
    if member_inputs and (x.ndim < 2 or x.shape[0] != self.size):
      raise ValueError(f"member_inputs=True takes x of shape (M, B, ...) with M = {self.size} members; "
                       f"got {tuple(x.shape)}")
    if self.members:
      outs = [m(x[i] if member_inputs else x, train=train, return_features=True)
              for i, m in enumerate(self.members)]
      member_logits = jnp.stack([o.logits for o in outs])
      shapes = {o.features.shape for o in outs}
      member_features = (jnp.stack([o.features for o in outs]) if len(shapes) == 1
                         else tuple(o.features for o in outs))
      features = jnp.concatenate([o.features for o in outs], axis=-1)
    else:
      if self.num_members < 1:
        raise ValueError(f"an ensemble needs num_members >= 1; got {self.num_members}")
      # Variables are created under one layout so that every layout starts from the same initial members.
      layout = "vmap" if self.is_initializing() else resolve_layout(self.layout)
      _, out = _stacked_members(self.member, self.num_members, layout, train, member_inputs)(None, x)
      member_logits, member_features = out.logits, out.features
      features = jnp.moveaxis(member_features, 0, -2).reshape(*member_features.shape[1:-1], -1)
    logits = combine_member_logits(member_logits, self.combine)
    if member_inputs:  # no ensemble prediction: the members saw different inputs
      logits = None
    if return_features:
      return ModelOutput(logits, features, None, member_logits, member_features)
    return logits if not member_inputs else member_logits


def is_ensemble(module) -> bool:
  return isinstance(module, Ensemble)


# ----------------------------------------------------------------------------------------
# Variables of a homogeneous ensemble <-> variables of its members
# ----------------------------------------------------------------------------------------

def stack_members(member_variables: Sequence[PyTree]) -> dict:
  """Variables of M single models (one architecture) -> the variables of their homogeneous Ensemble."""
  if not member_variables:
    raise ValueError("stack_members needs at least one member's variables")
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[dict(v) for v in member_variables])
  return {collection: {"member": tree} for collection, tree in stacked.items()}


def member_variables(ensemble_variables: PyTree, m: int) -> dict:
  """Member m's variables, usable with the member module alone (homogeneous or heterogeneous)."""
  out = {}
  for collection, tree in dict(ensemble_variables).items():
    if "member" in tree:
      out[collection] = jax.tree.map(lambda a: a[m], tree["member"])
    elif f"members_{m}" in tree:
      out[collection] = tree[f"members_{m}"]
  if "params" not in out:
    raise ValueError(f"no member {m} in these variables (collections: {list(dict(ensemble_variables))})")
  return out


def num_members_of(ensemble_variables: PyTree) -> int:
  params = dict(ensemble_variables)["params"]
  if "member" in params:
    return int(jax.tree.leaves(params["member"])[0].shape[0])
  return sum(1 for k in params if k.startswith("members_"))
