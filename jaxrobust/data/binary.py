"""Binary (imbalanced) tasks for AP maximisation: one-vs-all labels, the AdAP splits, the positive-aware sampler.

Tasks (config ``data.binary_task``; spec 1.8):

* ``'ova'``: one-vs-all on any labelled dataset: label 1 iff the original class is in
  ``data.binary_positive_class`` (an int or a list), else 0. CIFAR-10 class c gives a 10% positive rate.
* ``'coarse'``: CIFAR-100 with the 20 coarse superclasses (``load_dataset('cifar100', label_mode='coarse')``),
  then one-vs-all on the coarse class (5% positives); the paper uses coarse classes 0..9.
* ``'attr:<Attribute>'``: CelebA binary attribute (``label_mode='attr:Gray_Hair'``) on the official
  train / validation / test splits.

Train/validation split (``utils/imbalanced_cifar.py``): per *original* class c (in increasing order),
``np.random.seed(seed); np.random.shuffle(idx_c)``, the first ``int(n_c * 0.8)`` rows go to train and the
rest to validation; the test split is the full official test set. ``split_per_class`` reproduces that
exactly (legacy ``RandomState``), so with the official file order it gives the reference's split.

Sampler (``losses.py::DataSampler``, spec 1.5): every batch holds ``pos_num = batch_size // 2``
positives first, then negatives; ``len(labels) // batch_size`` batches per epoch. Positives are read
from an endless stream made of independent shuffles of the positive list (a pointer that reshuffles
when it wraps: the batch at a wrap takes the tail of the old order and the head of the new one, so an
index may repeat inside one batch; AdAP resolves that last-write-wins). Negatives likewise. Element t of
the stream is ``perm_{t // n}[t % n]`` with ``perm_k = default_rng((seed, tag, k)).permutation(n)``, so
the batches of epoch e are a pure function of (seed, epoch), which is what exact resume needs, and the
pointer state carries over between epochs as in the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import jax
import numpy as np

from jaxrobust.data.dataset import ArrayDataset, reduce_split

SAMPLERS = ("shuffle", "positive_balanced", "auto")
TASKS = ("ova", "coarse", "attr:<Attribute>")
_POS_TAG, _NEG_TAG = 1, 0


# -------------------------------------------------------------------------------------------
# Labels and splits
# -------------------------------------------------------------------------------------------

def one_vs_all(ds: ArrayDataset, positive: Union[int, Sequence[int]]) -> ArrayDataset:
  """Relabels ``ds``: 1 iff the label is one of ``positive``, else 0 (num_classes = 2)."""
  pos = np.atleast_1d(np.asarray(positive, np.int64))
  if pos.size == 0 or pos.min() < 0 or pos.max() >= ds.num_classes:
    raise ValueError(f"binary_positive_class must name classes in [0, {ds.num_classes}) of {ds.name!r}; "
                     f"got {positive!r}")
  labels = np.isin(ds.labels, pos).astype(np.int32)
  names = None
  if ds.class_names is not None:
    pos_name = "+".join(ds.class_names[int(c)] for c in pos)
    names = (f"not_{pos_name}", pos_name)
  return dataclasses.replace(ds, labels=labels, num_classes=2, class_names=names)


def split_per_class(labels: np.ndarray, train_fraction: float = 0.8, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(train_rows, val_rows): per class c in increasing order, shuffle its rows with
  ``RandomState(seed)`` and keep the first ``int(n_c * train_fraction)`` for training."""
  if not 0.0 < train_fraction <= 1.0:
    raise ValueError(f"train_fraction must be in (0, 1]; got {train_fraction}")
  labels = np.asarray(labels)
  train, val = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    np.random.RandomState(seed).shuffle(idx)  # the reference's np.random.seed(seed); shuffle(idx)
    k = int(len(idx) * train_fraction)
    train.append(idx[:k])
    val.append(idx[k:])
  return np.concatenate(train).astype(np.int64), np.concatenate(val).astype(np.int64)


class BinarySplits(NamedTuple):
  train: ArrayDataset
  val: Optional[ArrayDataset]
  test: ArrayDataset


def binary_task_spec(data_cfg: dict) -> tuple[str, Optional[str]]:
  """(task, label_mode to load with) from ``data.binary_task``."""
  task = data_cfg.get("binary_task") or "ova"
  if task == "ova":
    return task, data_cfg.get("label_mode")
  if task == "coarse":
    return task, "coarse"
  if isinstance(task, str) and task.startswith("attr:"):
    return task, task
  raise ValueError(f"data.binary_task must be one of {TASKS}; got {task!r}")


def load_binary_splits(data_cfg: dict, *, loader=None) -> BinarySplits:
  """(train, val, test) binary ArrayDatasets for a config's ``data`` section.

  Keys: name, binary_task, binary_positive_class, val_fraction (0.2; 0 = no validation split),
  split_seed (0), train_subset / test_subset (first n rows, or random ones with subset_seed; before splitting), source, data_dir.
  loader: ``load_dataset``-compatible callable (tests pass fakes).
  """
  if loader is None:
    from jaxrobust.data.registry import load_dataset as loader
  task, mode = binary_task_spec(data_cfg)
  name = data_cfg["name"]
  kw = dict(source=data_cfg.get("source", "auto"), data_dir=data_cfg.get("data_dir"))
  if mode is not None:
    kw["label_mode"] = mode
  if task == "coarse" and name != "cifar100":
    raise ValueError(f"binary_task 'coarse' is the CIFAR-100 superclass task; data.name must be 'cifar100', "
                     f"got {name!r}")
  if task.startswith("attr:") and name != "celeb_a":
    raise ValueError(f"binary_task {task!r} is a CelebA attribute task; data.name must be 'celeb_a', got {name!r}")
  train = loader(name, "train", **kw)
  test = loader(name, "test", **kw)
  seed = data_cfg.get("subset_seed")
  if data_cfg.get("train_subset"):
    train = reduce_split(train, int(data_cfg["train_subset"]), seed, "train_subset")
  if data_cfg.get("test_subset"):
    test = reduce_split(test, int(data_cfg["test_subset"]), seed, "test_subset")
  val_fraction = float(data_cfg.get("val_fraction", 0.2) or 0.0)
  val = None
  if task.startswith("attr:"):  # official splits; labels are already binary
    val = loader(name, "validation", **kw) if val_fraction > 0 else None
    return BinarySplits(train, val, test)
  pos = data_cfg.get("binary_positive_class")
  if pos is None:
    raise ValueError("data.binary_positive_class (the positive class index, or a list) is required for "
                     f"binary_task {task!r}")
  if val_fraction > 0:
    tr_rows, va_rows = split_per_class(train.labels, 1.0 - val_fraction, int(data_cfg.get("split_seed", 0)))
    train, val = train.subset(tr_rows), train.subset(va_rows)
  return BinarySplits(one_vs_all(train, pos), None if val is None else one_vs_all(val, pos),
                      one_vs_all(test, pos))


# -------------------------------------------------------------------------------------------
# The positive-aware sampler
# -------------------------------------------------------------------------------------------

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
  each row = pos_num positives then batch_size - pos_num negatives."""
  labels = np.asarray(labels)
  pos_num = batch_size // 2 if pos_num is None else int(pos_num)
  if batch_size < 2 or not 0 < pos_num < batch_size:
    raise ValueError(f"the positive-balanced sampler needs 0 < pos_num < batch_size; got pos_num={pos_num}, "
                     f"batch_size={batch_size}")
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


def make_batches(train_ds: ArrayDataset, cfg: dict, epoch: int, skip: int = 0) -> Iterator[dict]:
  """The training batches of ``epoch`` for a Trainer config, from the first not yet consumed.

  ``cfg['data']['sampler']``: 'positive_balanced' (AdAP / AP Max.; ``data.pos_num``, default
  batch_size // 2), 'shuffle' / None (``batch_iterator``: shuffled, remainder dropped), or 'auto':
  positive_balanced for the AP-type methods (``adap_*``, ``ap_max``), shuffle for everything else, as
  in the reference (baselines use a plain shuffled loader).
  """
  from jaxrobust.data.pipeline import batch_iterator
  sampler = cfg["data"].get("sampler") or "shuffle"
  if sampler == "auto":
    sampler = "positive_balanced" if uses_positive_sampler(cfg["method"]["name"]) else "shuffle"
  batch_size, seed = int(cfg["train"]["batch_size"]), int(cfg["seed"])
  if sampler == "positive_balanced":
    yield from positive_balanced_iterator(train_ds, batch_size, seed=seed, epoch=epoch,
                                          pos_num=cfg["data"].get("pos_num"), skip=skip)
    return
  if sampler != "shuffle":
    raise ValueError(f"unknown data.sampler {sampler!r}; choose one of {SAMPLERS}")
  it = batch_iterator(train_ds, batch_size, seed=seed, epoch=epoch, shuffle=True, drop_remainder=True)
  for i, batch in enumerate(it):
    if i >= skip:
      yield batch


def uses_positive_sampler(method_name: str) -> bool:
  """AP-type methods (adap_*, ap_max) train on the positive-balanced sampler (spec 1.5)."""
  name = method_name.lower().replace("-", "_")
  return name.startswith("adap_") or name == "ap_max"


def positive_rate(ds: ArrayDataset) -> float:
  return float(np.mean(np.asarray(ds.labels) == 1)) if len(ds) else float("nan")


__all__ = ["one_vs_all", "split_per_class", "load_binary_splits", "BinarySplits", "binary_task_spec",
           "positive_balanced_rows", "positive_balanced_iterator", "make_batches", "positive_rate", "uses_positive_sampler", "SAMPLERS"]
