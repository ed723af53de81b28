"""Ensembles as one model: M member classifiers whose prediction is the mean of their softmax probabilities.

    p_en(x) = (1/M) sum_m softmax(z_m(x)),   logits_en(x) = log p_en(x)

(Bui et al. 2021, AAAI, section 3 (CCE); Bui et al. 2023, TMLR, section 4 (TA-MOO): both average
probabilities, and attacks on the ensemble use log of that mean, which ``logits`` is: softmax(logits) = p_en,
so cross-entropy on it is -log p_en,y.) Single-logit members average sigmoids instead.

An ``Ensemble`` is a Flax module like every other model, so training, checkpoints, resume and sharding treat it
exactly as one model. Two kinds:

* homogeneous (``member`` + ``num_members``): M copies of one architecture, every variable stacked on a leading
  member axis (``params['members']``: leaves (M, ...)), initialised independently (member m from the m-th of
  M split keys), each member applied as the plain member model on its slice. ``layout`` chooses how the
  member axis runs:
    'vmap'      jax.vmap over members, one batched program (convolutions become grouped convolutions): the
                natural form on GPU/TPU;
    'unrolled'  the M member forwards side by side in one program, each an ordinary convolution: fastest on CPU,
                where XLA's grouped convolutions are slow (BENCHMARKS.md, ensemble member axis);
    'scan'      lax.map over members in one program: the least memory, but on CPU its train step is 4-6x
                slower (convolution gradients inside a loop; BENCHMARKS.md 1d);
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

  def _stacked(self, x, train: bool, member_inputs: bool) -> ModelOutput:
    """The homogeneous members: variables stacked at params['members'] (and batch_stats['members']), each member
    applied functionally through the unbound member module, mapped over the member axis by ``layout``."""
    member = self.member.clone(parent=None)
    m = self.num_members
    first = x[0, :1] if member_inputs else x[:1]
    created = {}

    def initial(rng):  # member i from the i-th of M split keys, created once for both collections
      if not created:
        created.update(jax.vmap(lambda k: dict(member.init({"params": k}, first, train=False)))(jax.random.split(rng, m)))
      return created

    params = self.param("members", lambda rng: initial(rng)["params"])
    has_stats = self.has_variable("batch_stats", "members") or "batch_stats" in created
    stats = self.variable("batch_stats", "members", lambda: created["batch_stats"]) if has_stats else None
    dropout = self.make_rng("dropout") if train and self.has_rng("dropout") else None
    keys = jax.random.split(dropout, m) if dropout is not None else None
    update_stats = train and stats is not None

    def one(p, s, xm, key):
      variables = {"params": p} if s is None else {"params": p, "batch_stats": s}
      rngs = {} if key is None else {"dropout": key}
      if update_stats:
        out, upd = member.apply(variables, xm, train=True, return_features=True, mutable=["batch_stats"], rngs=rngs)
        return out, upd["batch_stats"]
      return member.apply(variables, xm, train=train, return_features=True, rngs=rngs), s

    layout = resolve_layout(self.layout)
    s_all = None if stats is None else stats.value
    x_axis = 0 if member_inputs else None
    if layout == "vmap":
      out, new_stats = jax.vmap(one, in_axes=(0, 0 if s_all is not None else None, x_axis,
                                              0 if keys is not None else None))(params, s_all, x, keys)
    elif layout == "scan":
      def body(i):
        pick = lambda t: None if t is None else jax.tree.map(lambda a: a[i], t)  # noqa: E731
        return one(pick(params), pick(s_all), x[i] if member_inputs else x, None if keys is None else keys[i])
      out, new_stats = jax.lax.map(body, jnp.arange(m))
    else:  # unrolled: M ordinary member programs side by side
      results = [one(jax.tree.map(lambda a: a[i], params),
                     None if s_all is None else jax.tree.map(lambda a: a[i], s_all),
                     x[i] if member_inputs else x, None if keys is None else keys[i]) for i in range(m)]
      out, new_stats = jax.tree.map(lambda *a: jnp.stack(a), *results)
    if update_stats and not self.is_initializing():
      stats.value = new_stats
    return out

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
      out = self._stacked(x, train, member_inputs)
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


def _swap_member_axes(out, source: int, destination: int):
  if not isinstance(out, ModelOutput) or out.member_logits is None:
    return out
  features = out.member_features
  if not isinstance(features, tuple):  # a tuple (members of different widths) holds (B, D_m) arrays already
    features = jnp.moveaxis(features, source, destination)
  return out._replace(member_logits=jnp.moveaxis(out.member_logits, source, destination), member_features=features)


def batch_major(out):
  """An ensemble's ModelOutput with the member arrays as (B, M, ...), so that every leaf has the batch first
  (micro-batching, sharding by rows); other outputs unchanged."""
  return _swap_member_axes(out, 0, 1)


def member_major(out):
  """The inverse of ``batch_major``: member arrays back to (M, B, ...)."""
  return _swap_member_axes(out, 1, 0)


# ----------------------------------------------------------------------------------------
# Variables of a homogeneous ensemble <-> variables of its members
# ----------------------------------------------------------------------------------------

def stack_members(member_variables: Sequence[PyTree]) -> dict:
  """Variables of M single models (one architecture) -> the variables of their homogeneous Ensemble."""
  if not member_variables:
    raise ValueError("stack_members needs at least one member's variables")
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[dict(v) for v in member_variables])
  return {collection: {"members": tree} for collection, tree in stacked.items()}


def member_variables(ensemble_variables: PyTree, m: int) -> dict:
  """Member m's variables, usable with the member module alone (homogeneous or heterogeneous)."""
  out = {}
  for collection, tree in dict(ensemble_variables).items():
    if "members" in tree:
      out[collection] = jax.tree.map(lambda a: a[m], tree["members"])
    elif f"members_{m}" in tree:
      out[collection] = tree[f"members_{m}"]
  if "params" not in out:
    raise ValueError(f"no member {m} in these variables (collections: {list(dict(ensemble_variables))})")
  return out


def num_members_of(ensemble_variables: PyTree) -> int:
  params = dict(ensemble_variables)["params"]
  if "members" in params:
    return int(jax.tree.leaves(params["members"])[0].shape[0])
  return sum(1 for k in params if k.startswith("members_"))
