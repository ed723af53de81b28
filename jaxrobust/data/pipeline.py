"""Host-side batching (deterministic shuffling, multi-process sharding, eval padding) and
jittable augmentation.

Batches are NumPy on the host; put them on devices with jax.device_put or the sharding helpers.
"""

from __future__ import annotations

from typing import Iterator, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.types import Array, PRNGKey


def num_batches(num_examples: int, batch_size: int, drop_remainder: bool = True) -> int:
  """Batches per epoch: floor(n / b) if drop_remainder else ceil(n / b)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if drop_remainder:
    return num_examples // batch_size
  return -(-num_examples // batch_size)


def steps_per_epoch(data: Union[ArrayDataset, int], batch_size: int,
                    drop_remainder: bool = True) -> int:
  """`num_batches` for a dataset (or a length) with a GLOBAL batch size."""
  return num_batches(data if isinstance(data, int) else len(data), batch_size, drop_remainder)


def epoch_order(num_examples: int, seed: int, epoch: int = 0, shuffle: bool = True) -> np.ndarray:
  """The epoch's example order (N,) int64: np.random.default_rng((seed, epoch)).permutation."""
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng((seed, epoch)).permutation(num_examples)


def batch_iterator(ds: ArrayDataset, batch_size: int, *, seed: int, epoch: int = 0,
                   shuffle: bool = True, drop_remainder: bool = True,
                   process_index: Optional[int] = None, process_count: Optional[int] = None,
                   pad_last: bool = False) -> Iterator[dict]:
  """One epoch of batches as dicts of host arrays.

  Yields {'image': float32 (b, H, W, C) in [0, 1], 'label': int32 (b,), 'index': int32 (b,)
  dataset row of each example, 'mask': float32 (b,) 1 for real rows, 0 for padding}, where
  b = batch_size / process_count is this process's share of the GLOBAL batch_size.

  The order depends only on (seed, epoch) (see `epoch_order`), never on the process: process
  i takes rows [i*b, (i+1)*b) of every global batch, and gathers only those images.
  drop_remainder: drop the final partial global batch. pad_last=True (for evaluation) instead
  keeps it, padded to full size with copies of its first row under mask 0 (so 'index' stays a
  valid row); it overrides drop_remainder. With process_count > 1 an unpadded partial batch
  is refused, since processes would get unequal shards.
  """
  if process_index is None:
    process_index = jax.process_index()
  if process_count is None:
    process_count = jax.process_count()
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index < process_count, got {process_index}, "
                     f"{process_count}")
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} must be a positive multiple of "
                     f"process_count {process_count}")
  n = len(ds)
  keep_partial = pad_last or not drop_remainder
  if process_count > 1 and keep_partial and not pad_last and n % batch_size:
    raise ValueError(f"{n} examples leave a partial batch of {n % batch_size} that cannot be "
                     f"split evenly over {process_count} processes; use drop_remainder=True "
                     "or pad_last=True")
  order = epoch_order(n, seed, epoch, shuffle)
  count = num_batches(n, batch_size, drop_remainder=not keep_partial)
  local = batch_size // process_count
  lo, hi = process_index * local, (process_index + 1) * local
  return _batches(ds, order, batch_size, count, lo, hi, pad_last)


def _batches(ds: ArrayDataset, order: np.ndarray, batch_size: int, count: int, lo: int,
             hi: int, pad_last: bool) -> Iterator[dict]:
  for k in range(count):
    global_rows = order[k * batch_size:(k + 1) * batch_size]
    mask = np.ones(batch_size, np.float32)
    if pad_last and len(global_rows) < batch_size:
      mask[len(global_rows):] = 0.0
      filler = np.full(batch_size - len(global_rows), global_rows[0])
      global_rows = np.concatenate([global_rows, filler])
    rows = global_rows[lo:hi]
    yield {"image": ds.as_float(rows), "label": ds.labels[rows],
           "index": rows.astype(np.int32), "mask": mask[lo:hi][:len(rows)]}


def random_crop_flip(key: PRNGKey, images: Array, pad: int = 4, flip: bool = True) -> Array:
  """Random translation by up to `pad` pixels with zero fill, then a random horizontal flip.

  Like torchvision RandomCrop(H, padding=pad) + RandomHorizontalFlip(): each example gets its
  own offset (uniform in 0..2*pad per axis) and flip coin, all drawn from `key`.
  images: (B, H, W, C) float; returns the same shape and dtype. `pad` and `flip` are Python
  values (static under jax.jit: use static_argnames=('pad', 'flip') or close over them).
  """
  b, h, w, c = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * pad + 1)

  def crop_one(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  out = jax.vmap(crop_one)(padded, offsets)
  if flip:
    flips = jax.random.bernoulli(flip_key, 0.5, (b,))
    out = jnp.where(flips[:, None, None, None], out[:, :, ::-1, :], out)
  return out
