"""ArrayDataset validation and methods; DATASET_INFO; the shipped digits."""

import dataclasses

import numpy as np
import pytest

from jaxrobust.data import (CIFAR100_COARSE_CLASSES, CIFAR100_FINE_TO_COARSE, DATASET_INFO,
                            ArrayDataset, dataset_info, load_dataset)
from jaxrobust.data.shipped import digits_split_indices


def _tiny(n=6, dtype=np.uint8):
  images = np.arange(n * 2 * 2 * 1).reshape(n, 2, 2, 1) % 256
  images = images.astype(dtype) if dtype == np.uint8 else (images / 255.0).astype(dtype)
  return ArrayDataset(images=images, labels=np.arange(n) % 3, num_classes=3, name="tiny",
                      class_names=("a", "b", "c"))


def test_array_dataset_methods():
  ds = _tiny()
  assert len(ds) == 6 and ds.image_shape == (2, 2, 1) and ds.labels.dtype == np.int32
  sub = ds.subset([4, 1])
  np.testing.assert_array_equal(sub.labels, [1, 1])
  np.testing.assert_array_equal(sub.images, ds.images[[4, 1]])
  assert sub.name == "tiny" and sub.num_classes == 3 and sub.class_names == ("a", "b", "c")
  assert len(ds.subset(ds.labels == 0)) == 2
  assert len(ds.take(4)) == 4 and len(ds.take(100)) == 6 and len(ds.subset([])) == 0
  x = ds.as_float([0, 5])
  assert x.dtype == np.float32 and x.shape == (2, 2, 2, 1)
  np.testing.assert_array_equal(x, ds.images[[0, 5]] / np.float32(255))
  assert ds.as_float().max() <= 1.0
  as_float32 = _tiny(dtype=np.float32)
  np.testing.assert_allclose(as_float32.as_float(), ds.as_float(), atol=1e-7)
  relabeled = dataclasses.replace(ds, labels=np.zeros(6, np.int64), num_classes=1,
                                  class_names=None)
  assert relabeled.labels.dtype == np.int32


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.zeros((2, 2, 2), np.uint8)), "images must be"),
    (dict(labels=np.zeros(3, np.int32)), "labels must have shape"),
    (dict(labels=np.array([0, 3])), r"labels must lie in \[0, 3\)"),
    (dict(labels=np.array([0.0, 1.0])), "labels must be integers"),
    (dict(images=np.full((2, 2, 2, 1), 2.0, np.float32)), r"float images must lie in \[0, 1\]"),
    (dict(images=np.zeros((2, 2, 2, 1), np.int16)), "uint8"),
    (dict(class_names=("a",)), "class_names"),
])
def test_array_dataset_validation(kwargs, message):
  base = dict(images=np.zeros((2, 2, 2, 1), np.uint8), labels=np.array([0, 2]), num_classes=3,
              name="bad")
  with pytest.raises(ValueError, match=message):
    ArrayDataset(**{**base, **kwargs})


def test_dataset_info():
  assert dataset_info("cifar10").image_shape == (32, 32, 3)
  assert dataset_info("mnist").num_classes == 10 and dataset_info("mnist").default_eps == 0.3
  assert dataset_info("cifar100", "coarse").num_classes == 20
  assert dataset_info("celeb_a", "attr:Gray_Hair").class_names == ("not_Gray_Hair", "Gray_Hair")
  assert set(DATASET_INFO) == {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                               "svhn_cropped", "celeb_a"}
  with pytest.raises(ValueError, match="valid names: digits, mnist"):
    dataset_info("imagenet")
  # The fine -> coarse table: every superclass has exactly 5 fine classes.
  assert len(CIFAR100_COARSE_CLASSES) == 20
  np.testing.assert_array_equal(np.bincount(CIFAR100_FINE_TO_COARSE, minlength=20), 5)


def test_digits():
  train, test = load_dataset("digits"), load_dataset("digits", "test")  # default split: train
  everything = load_dataset("digits", "all")
  assert (len(train), len(test), len(everything)) == (1438, 359, 1797)
  for ds in (train, test):
    assert ds.images.dtype == np.uint8 and ds.image_shape == (8, 8, 1)
    assert ds.labels.dtype == np.int32 and set(ds.labels.tolist()) == set(range(10))
    assert ds.images.max() == 255 and ds.images.min() == 0 and ds.name == "digits"
  # sklearn's 0..16 intensities map to floor(v * 255 / 16 + 0.5).
  assert set(np.unique(everything.images).tolist()) <= {int(v * 255 / 16 + 0.5) for v in range(17)}
  # Stratified: each class is ~20% test; disjoint and complete; deterministic.
  train_idx, test_idx = digits_split_indices(everything.labels)
  assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 1797
  counts_all = np.bincount(everything.labels)
  counts_test = np.bincount(everything.labels[test_idx])
  np.testing.assert_array_equal(counts_test, np.round(0.2 * counts_all))
  again_train, again_test = digits_split_indices(everything.labels)
  np.testing.assert_array_equal(train_idx, again_train)
  np.testing.assert_array_equal(test.labels, everything.labels[test_idx])
  np.testing.assert_array_equal(load_dataset("digits", "test").images, test.images)
  # Pinned so that any change of the split procedure is noticed.
  assert test_idx[:8].tolist() == [1, 3, 4, 6, 11, 13, 14, 21]
  assert train_idx[:8].tolist() == [0, 2, 5, 7, 8, 9, 10, 12]
  np.testing.assert_array_equal(load_dataset("digits", source="shipped").labels, train.labels)


def test_reduce_split_first_rows_random_rows_and_class_sorted_error():
  from jaxrobust.data.dataset import reduce_split
  labels = np.repeat(np.arange(4), 25)  # class-sorted, like the CIFAR-10 PNG strips
  images = np.broadcast_to(np.arange(100, dtype=np.uint8)[:, None, None, None], (100, 2, 2, 1)).copy()
  ds = ArrayDataset(images=images, labels=labels, num_classes=4, name="sorted")  # pixel value = row
  with pytest.raises(ValueError, match=r"data.test_subset=40 takes the first 40 rows, which hold only 2 of .* 4 "
                                       r"classes.*subset_seed"):
    reduce_split(ds, 40, None, "test_subset")
  a = reduce_split(ds, 40, 0, "test_subset")
  b = reduce_split(ds, 40, 0, "test_subset")
  assert len(a) == 40 and np.unique(a.labels).size == 4
  np.testing.assert_array_equal(a.labels, b.labels)  # same seed, same rows
  rows = a.images[:, 0, 0, 0]
  assert np.unique(rows).size == 40 and np.all(np.diff(rows.astype(int)) > 0)  # distinct rows, file order
  assert not np.array_equal(reduce_split(ds, 40, 1).images[:, 0, 0, 0], rows)  # another seed, other rows
  mixed = ds.subset(np.argsort(np.arange(100) % 25, kind="stable"))  # interleaved classes: first rows are fine
  assert len(reduce_split(mixed, 40, None)) == 40
  assert len(reduce_split(ds, 5, None)) == 5  # too few rows to hold every class: first rows as asked
