"""Positive-balanced batches: a fixed number of positives (label 1) first in every batch, then negatives.

The sampler of the AdAP reference code (Li, Tong, Yang 2023, ``losses.py::DataSampler``), which AP
maximisation needs because a batch without positives has no AP estimate: every batch holds
``pos_num`` positives then ``batch_size - pos_num`` negatives; an epoch has ``len(labels) // batch_size``
batches. Positives are read from an endless stream made of independent shuffles of the positive list
(a pointer that reshuffles when it wraps: the batch at a wrap takes the tail of the old order and the
head of the new one, so an index may repeat inside one batch). Negatives likewise.

Element t of a stream is ``perm_{t // n}[t % n]`` with ``perm_k = default_rng((seed, 7, tag, k)).permutation(n)``,
so the batches of epoch e are a pure function of (seed, epoch), which exact resume needs, and the
pointer carries over between epochs as in the reference.
"""

from __future__ import annotations

from typing import Iterator, Optional

import jax
import numpy as np

from jaxrobust.data.dataset import ArrayDataset

_POS_TAG, _NEG_TAG = 1, 0


def _stream(pool: np.ndarray, start: int, count: int, seed: int, tag: int) -> np.ndarray:
  """Elements [start, start + count) of the endless stream of shuffles of ``pool``."""
  n = len(pool)
  t = np.arange(start, start + count, dtype=np.int64)
  cycles = t // n
  out = np.empty(count, np.int64)
  for k in np.unique(cycles):
    perm = np.random.default_rng((seed, 7, tag, int(k))).permutation(n)
    sel = cycles == k
    out[sel] = pool[perm[t[sel] - k * n]]
  return out


def positive_balanced_rows(labels: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                           pos_num: Optional[int] = None, first: int = 0,
                           count: Optional[int] = None) -> np.ndarray:
  """Global dataset rows of batches ``first .. first+count-1`` of ``epoch``: (count, batch_size) int64,
  each row = pos_num positives (default batch_size // 2) then batch_size - pos_num negatives."""
  labels = np.asarray(labels)
  pos_num = batch_size // 2 if pos_num is None else int(pos_num)
  if batch_size < 2 or not 0 < pos_num < batch_size:
    raise ValueError(f"the positive-balanced sampler needs 0 < pos_num < batch_size; got pos_num={pos_num}, "
                     f"batch_size={batch_size}")
  classes = np.unique(labels)
  if not np.isin(classes, (0, 1)).all():  # label 1 of a multi-class set is not "the positive class"
    raise ValueError(f"the positive-balanced sampler needs binary labels in {{0, 1}}; got classes "
                     f"{classes[:10].tolist()}{' ...' if len(classes) > 10 else ''}; make the task binary first "
                     "(data.binary_task='ova' with data.binary_positive_class)")
  pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
  if len(pos) == 0 or len(neg) == 0:
    raise ValueError(f"the positive-balanced sampler needs positives and negatives; got {len(pos)} positives "
                     f"and {len(neg)} negatives")
  per_epoch = len(labels) // batch_size
  count = per_epoch - first if count is None else count
  neg_num = batch_size - pos_num
  start = epoch * per_epoch + first
  p = _stream(pos, start * pos_num, count * pos_num, seed, _POS_TAG).reshape(count, pos_num)
  q = _stream(neg, start * neg_num, count * neg_num, seed, _NEG_TAG).reshape(count, neg_num)
  return np.concatenate([p, q], axis=1)


def positive_balanced_iterator(ds: ArrayDataset, batch_size: int, *, seed: int, epoch: int = 0,
                               pos_num: Optional[int] = None, skip: int = 0,
                               process_index: Optional[int] = None,
                               process_count: Optional[int] = None) -> Iterator[dict]:
  """One epoch of positive-balanced batches, the same dicts as ``batch_iterator``:
  {'image': float32 (b, H, W, C), 'label': int32 (b,), 'index': int32 (b,), 'mask': float32 (b,) ones},
  b = batch_size / process_count; process i takes rows [i b, (i+1) b) of every global batch.
  ``skip`` drops the first batches without loading their images (resume)."""
  if process_index is None:
    process_index = jax.process_index()
  if process_count is None:
    process_count = jax.process_count()
  if process_count < 1 or not 0 <= process_index < process_count or batch_size % process_count:
    raise ValueError(f"need 0 <= process_index < process_count and batch_size divisible by process_count; "
                     f"got {process_index}, {process_count}, {batch_size}")
  per_epoch = len(ds) // batch_size
  skip = min(max(int(skip), 0), per_epoch)
  rows = positive_balanced_rows(ds.labels, batch_size, seed=seed, epoch=epoch, pos_num=pos_num, first=skip)
  local = batch_size // process_count
  lo, hi = process_index * local, (process_index + 1) * local
  for global_rows in rows:
    r = global_rows[lo:hi]
    yield {"image": ds.as_float(r), "label": ds.labels[r], "index": r.astype(np.int32),
           "mask": np.ones(len(r), np.float32)}


__all__ = ["positive_balanced_rows", "positive_balanced_iterator"]
