"""Binary (imbalanced) tasks built from labelled datasets: one-vs-all labels and per-class splits.

The protocol of Li, Tong, Yang 2023 (AdAP, Section 5 and Table 6; reference ``utils/imbalanced_cifar.py``),
selected by ``data.binary_task``:

* ``'ova'``: one-vs-all on any labelled dataset: label 1 iff the original class is in
  ``data.binary_positive_class`` (an int or a list), else 0. CIFAR-10 class c gives a 10% positive rate.
* ``'coarse'``: CIFAR-100 with the 20 coarse superclasses (``load_dataset('cifar100', label_mode='coarse')``),
  then one-vs-all on the coarse class (5% positives); the paper uses coarse classes 0..9.
* ``'attr:<Attribute>'``: CelebA binary attribute (``label_mode='attr:Gray_Hair'``) on the official
  train / validation / test splits.

Train/validation split: per *original* class c (in increasing order), ``np.random.seed(seed);
np.random.shuffle(idx_c)``, the first ``int(n_c * 0.8)`` rows go to train and the rest to validation;
the test split is the full official test set. ``split_per_class`` reproduces that exactly (legacy
``RandomState``), so with the official file order it gives the reference's split. ``load_splits``
(``jaxrobust.data.splits``) puts these pieces together for a config's ``data`` section.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np

from jaxrobust.data.dataset import ArrayDataset

TASKS = ("ova", "coarse", "attr:<Attribute>")


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


def binary_task_spec(data_cfg: dict) -> tuple[str, Optional[str]]:
  """(task, label_mode to load with) from ``data.binary_task`` (default 'ova')."""
  task = data_cfg.get("binary_task") or "ova"
  if task == "ova":
    return task, data_cfg.get("label_mode")
  if task == "coarse":
    return task, "coarse"
  if isinstance(task, str) and task.startswith("attr:"):
    return task, task
  raise ValueError(f"data.binary_task must be one of {TASKS}; got {task!r}")


def check_task_dataset(task: str, name: str) -> None:
  """The coarse task exists only for CIFAR-100, the attribute tasks only for CelebA."""
  if task == "coarse" and name != "cifar100":
    raise ValueError(f"binary_task 'coarse' is the CIFAR-100 superclass task; data.name must be 'cifar100', "
                     f"got {name!r}")
  if task.startswith("attr:") and name != "celeb_a":
    raise ValueError(f"binary_task {task!r} is a CelebA attribute task; data.name must be 'celeb_a', got {name!r}")


def positive_rate(ds: ArrayDataset) -> float:
  return float(np.mean(np.asarray(ds.labels) == 1)) if len(ds) else float("nan")


__all__ = ["one_vs_all", "split_per_class", "binary_task_spec", "check_task_dataset", "positive_rate", "TASKS"]
