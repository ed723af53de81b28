"""The train / validation / test splits a config's ``data`` section names.

    splits = load_splits(cfg['data'])   # Splits(train, val, test); val is None without a validation split

Plain datasets: the official train and test splits, optionally cut to ``train_subset`` / ``test_subset``
rows (the first n, or n random rows with ``subset_seed``), no validation split. Binary tasks
(``data.binary_task``; see ``jaxrobust.data.binary``): the subsets are cut first, then a stratified
``1 - val_fraction`` / ``val_fraction`` split of the training rows (``split_seed``) and one-vs-all labels;
CelebA attribute tasks use the official validation split instead.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from jaxrobust.data.binary import binary_task_spec, check_task_dataset, one_vs_all, split_per_class
from jaxrobust.data.dataset import ArrayDataset, reduce_split


class Splits(NamedTuple):
  train: ArrayDataset
  val: Optional[ArrayDataset]
  test: ArrayDataset


def load_splits(data: dict, *, loader=None) -> Splits:
  """Splits(train, val, test) for a config's ``data`` section.

  Keys: name, source, data_dir, label_mode, train_subset, test_subset, subset_seed; for binary tasks also
  binary_task, binary_positive_class, val_fraction (0.2; 0 = no validation split), split_seed (0).
  loader: ``load_dataset``-compatible callable (tests pass fakes).
  """
  if loader is None:
    from jaxrobust.data.registry import load_dataset as loader
  name = data["name"]
  task = None
  label_mode = data.get("label_mode") or None
  if data.get("binary_task"):
    task, label_mode = binary_task_spec(data)
    check_task_dataset(task, name)
  kw = dict(source=data.get("source", "auto"), data_dir=data.get("data_dir"))
  if label_mode is not None:
    kw["label_mode"] = label_mode
  train = loader(name, "train", **kw)
  test = loader(name, "test", **kw)
  seed = data.get("subset_seed")
  if data.get("train_subset"):
    train = reduce_split(train, int(data["train_subset"]), seed, "train_subset")
  if data.get("test_subset"):
    test = reduce_split(test, int(data["test_subset"]), seed, "test_subset")
  if task is None:
    return Splits(train, None, test)
  val_fraction = float(data.get("val_fraction", 0.2) or 0.0)
  if task.startswith("attr:"):  # official splits; labels are already binary
    return Splits(train, loader(name, "validation", **kw) if val_fraction > 0 else None, test)
  pos = data.get("binary_positive_class")
  if pos is None:
    raise ValueError("data.binary_positive_class (the positive class index, or a list) is required for "
                     f"binary_task {task!r}")
  val = None
  if val_fraction > 0:
    tr_rows, va_rows = split_per_class(train.labels, 1.0 - val_fraction, int(data.get("split_seed", 0)))
    train, val = train.subset(tr_rows), train.subset(va_rows)
  return Splits(one_vs_all(train, pos), None if val is None else one_vs_all(val, pos), one_vs_all(test, pos))


def load_binary_splits(data: dict, *, loader=None) -> Splits:
  """``load_splits`` of a binary task; ``data.binary_task`` defaults to 'ova'."""
  return load_splits(dict(data, binary_task=data.get("binary_task") or "ova"), loader=loader)


__all__ = ["Splits", "load_splits", "load_binary_splits"]
