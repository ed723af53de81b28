"""Per-example bookkeeping shared by every attack: broadcasting, keys, the active set.

Attacks work on a batch x of shape (B, ...) where every example is attacked on its own:

* Broadcasting. A per-example quantity (eps, a step size, a mask) is a scalar or a (B,) vector;
  ``expand`` reshapes a (B,) vector to (B, 1, ..., 1) so that it multiplies or selects x-shaped
  arrays, ``as_bcast`` does the same for a scalar-or-(B,) value cast to x's dtype, and
  ``per_example`` turns a scalar-or-(B,) value into a (B,) vector (so scalar and per-example eps
  run the same compiled program).
* Keys. Example i draws its randomness from ``fold_in(key, i)`` (``example_keys``), or from
  ``fold_in(key, index_i)`` for a global example id (``indexed_keys``: a point gets the same draws
  whichever batch or bucket it sits in); restarts and targets fold their number into those keys
  (``fold_keys``). ``IndexedKey(key, index)`` passes one key with the batch's global example ids to any
  attack: ``example_keys`` turns it into ``indexed_keys(key, index)``, and the attacks that share draws across a
  batch (APGD, FAB, Square, AutoAttack: ``key_and_index``) take the shared key and the ids from it. The
  evaluator passes one per batch, so an evaluation's result does not depend on its batch size.
* Active set. Multi-run attacks (restarts, targets, AutoAttack's stages) only keep attacking the
  points that are still robust. Inside a compiled program that is a (B,) mask: ``select`` is the
  masked update, ``absorb`` moves the points a run fooled out of the set and
  ``run_until_all_fooled`` loops over runs while any point is left (``whole_batch``: all of them, with
  ids 0..B-1). On the host, AutoAttack
  gathers the still-robust points into fixed-size buckets (``active_buckets``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrobust.types import Array


# ----------------------------------------------------------------------------------------
# Broadcasting
# ----------------------------------------------------------------------------------------

def expand(v: Array, x: Array) -> Array:
  """(B,) -> (B, 1, ..., 1) with x's rank, dtype kept (values, masks)."""
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


def as_bcast(v, x: Array) -> Array:
  """Scalar or (B,) value in x's dtype, ready to multiply x: a scalar stays scalar, (B,) -> (B, 1, ..., 1)."""
  v = jnp.asarray(v, x.dtype)
  return expand(v, x) if v.ndim else v


def per_example(v, x: Array) -> Array:
  """Scalar or (B,) -> (B,) in x's dtype."""
  return jnp.broadcast_to(jnp.asarray(v, x.dtype), (x.shape[0],))


def select(mask: Array, on_true: Array, on_false: Array) -> Array:
  """Per-example ``where``: row i of on_true where mask[i], else of on_false. mask (B,); arrays (B, ...)."""
  return jnp.where(expand(mask, on_true), on_true, on_false)


# ----------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------

@struct.dataclass
class IndexedKey:
  """One PRNG key with the (B,) global ids of a batch's examples: example i draws from ``fold_in(key, index[i])``.

  Accepted wherever an attack takes ``key``; the same point then gets the same draws in any batch.
  """
  key: Array
  index: Array


def key_and_index(key, batch_size: int) -> tuple[Array, Array]:
  """(shared key, (B,) example ids): an ``IndexedKey``'s parts, or (key, 0..B-1) for a plain key."""
  if isinstance(key, IndexedKey):
    if key.index.shape != (batch_size,):
      raise ValueError(f"IndexedKey has {key.index.shape} example ids for a batch of {batch_size}")
    return key.key, key.index
  if key is None:
    raise ValueError("this attack is randomised and needs a PRNG key (jax.random.key(seed))")
  return key, jnp.arange(batch_size)


def _is_key_batch(key) -> bool:
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim == 1
  return key.ndim == 2  # raw uint32 keys: (2,) is one key, (B, 2) a batch


def indexed_keys(key, index: Array) -> Array:
  """Keys ``fold_in(key, index_i)`` for (B,) integer example ids -> (B,) keys ((B, 2) raw)."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index.astype(jnp.uint32))


def example_keys(key, batch_size: int):
  """One key per example of a batch: ``fold_in(key, i)``, i = 0..B-1, for a single key; a (B,) batch of
  keys is returned as is (so ``example_keys(key, B)[i:i+1]`` reproduces row i of a batch attack). An
  ``IndexedKey`` gives ``fold_in(key, index_i)``; for rows that are not its examples (groups, ensemble members:
  ``batch_size`` differs from its ids' count) its shared key is folded with the row number as for a plain key."""
  if isinstance(key, IndexedKey):
    if key.index.shape == (batch_size,):
      return indexed_keys(key.key, key.index)
    key = key.key
  if key is None:
    raise ValueError("this attack is randomised and needs a PRNG key (jax.random.key(seed))")
  key = jnp.asarray(key) if not hasattr(key, "dtype") else key
  if _is_key_batch(key):
    if key.shape[0] != batch_size:
      raise ValueError(f"got {key.shape[0]} per-example keys for a batch of {batch_size}")
    return key
  return indexed_keys(key, jnp.arange(batch_size, dtype=jnp.uint32))


def fold_keys(keys: Array, data) -> Array:
  """``fold_in(k_i, data)`` for every per-example key (data: an int, e.g. a restart number, may be traced; or
  (B,) ints, ``fold_in(k_i, data_i)``)."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, 0 if jnp.ndim(data) else None))(keys, data)


# ----------------------------------------------------------------------------------------
# Active set: the points still robust
# ----------------------------------------------------------------------------------------

def whole_batch(x: Array) -> tuple[Array, Array]:
  """(index, active) to attack every example of x on its own: ids 0..B-1, all active."""
  b = x.shape[0]
  return jnp.arange(b), jnp.ones((b,), bool)


def keyed_batch(key, x: Array) -> tuple[Array, Array, Array]:
  """(shared key, index, active) to attack every example of x on its own: the ids of an ``IndexedKey``
  (``key_and_index``; 0..B-1 for a plain key), all active."""
  key, index = key_and_index(key, x.shape[0])
  return key, index, jnp.ones((x.shape[0],), bool)


def absorb(still: Array, adv: Array, candidate: Array, fooled: Array) -> tuple[Array, Array]:
  """One run's result merged into the active set: points still robust that the run fooled take the run's
  point and leave the set. still, fooled: (B,) bool; adv, candidate: (B, ...). Returns (still, adv)."""
  newly = still & fooled
  return still & ~newly, select(newly, candidate, adv)


def run_until_all_fooled(run: Callable[[Array], tuple[Array, Array]], still: Array, x: Array, start, stop
                         ) -> tuple[Array, Array]:
  """Runs r = start, start + 1, ... < stop while any point is still robust (one ``lax.while_loop``).

  run(r) -> (candidate (B, ...), fooled (B,) bool) attacks the whole batch; only the points of ``still``
  take its results (``absorb``). Starts from adv = x. Returns (still, adv).
  """
  def cond(carry):
    r, still_, _ = carry
    return (r < stop) & jnp.any(still_)

  def body(carry):
    r, still_, adv = carry
    candidate, fooled = run(r)
    return (r + 1,) + absorb(still_, adv, candidate, fooled)

  _, still, adv = jax.lax.while_loop(cond, body, (start, still, x))
  return still, adv


def active_buckets(active: np.ndarray, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Host-side gather of the active points into buckets of exactly ``rows`` rows.

  active: (N,) bool. Returns [(index, valid), ...]: index (rows,) int64, the ids of up to ``rows`` active
  points padded with id 0; valid (rows,) bool marks the real ones (padding rows must be masked out).
  """
  idx = np.nonzero(active)[0]
  buckets = []
  for start in range(0, len(idx), rows):
    chunk = idx[start:start + rows]
    index = np.zeros(rows, np.int64)
    index[:len(chunk)] = chunk
    buckets.append((index, np.arange(rows) < len(chunk)))
  return buckets
