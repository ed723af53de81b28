"""load_splits: a config's data section -> Splits(train, val, test), plain datasets and binary tasks."""

import numpy as np
import pytest

from jaxrobust.data import Splits, load_dataset, load_splits
from jaxrobust.data.binary import one_vs_all, split_per_class
from jaxrobust.data.dataset import ArrayDataset, reduce_split


def _ds(n, seed, k=10):
  rng = np.random.default_rng(seed)
  return ArrayDataset(images=rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
                      labels=rng.integers(0, k, n).astype(np.int32), num_classes=k, name="toy")


def test_plain_dataset_with_subsets_has_no_validation_split():
  sp = load_splits({"name": "digits", "train_subset": 300, "test_subset": 100, "subset_seed": 2})
  assert isinstance(sp, Splits) and sp.val is None
  full_train, full_test = load_dataset("digits", "train"), load_dataset("digits", "test")
  np.testing.assert_array_equal(sp.train.images, reduce_split(full_train, 300, 2, "train_subset").images)
  np.testing.assert_array_equal(sp.test.labels, reduce_split(full_test, 100, 2, "test_subset").labels)
  whole = load_splits({"name": "digits"})
  assert len(whole.train) == len(full_train) and len(whole.test) == len(full_test)


def test_binary_task_cuts_subsets_then_splits_per_class_and_relabels():
  full = {"train": _ds(600, 1), "test": _ds(200, 2)}
  calls = []

  def loader(name, split, **kw):
    calls.append((split, kw))
    return full[split]

  data = {"name": "cifar10", "binary_task": "ova", "binary_positive_class": 4, "train_subset": 500,
          "val_fraction": 0.2, "split_seed": 3}
  sp = load_splits(data, loader=loader)
  assert [c[0] for c in calls] == ["train", "test"] and "label_mode" not in calls[0][1]
  cut = full["train"].take(500)
  tr, va = split_per_class(cut.labels, 0.8, 3)
  np.testing.assert_array_equal(sp.train.labels, one_vs_all(cut.subset(tr), 4).labels)
  np.testing.assert_array_equal(sp.val.images, cut.subset(va).images)
  assert sp.test.num_classes == 2 and set(np.unique(sp.val.labels)) == {0, 1}
  assert load_splits(dict(data, val_fraction=0), loader=loader).val is None


def test_attribute_tasks_use_the_official_validation_split():
  full = {s: _ds(50, i, k=2) for i, s in enumerate(("train", "validation", "test"))}
  seen = []

  def loader(name, split, **kw):
    seen.append((split, kw.get("label_mode")))
    return full[split]

  sp = load_splits({"name": "celeb_a", "binary_task": "attr:Mustache"}, loader=loader)
  assert sp.val is full["validation"] and sp.train is full["train"]
  assert seen == [("train", "attr:Mustache"), ("test", "attr:Mustache"), ("validation", "attr:Mustache")]
  with pytest.raises(ValueError, match="celeb_a"):
    load_splits({"name": "cifar10", "binary_task": "attr:Mustache"}, loader=loader)
