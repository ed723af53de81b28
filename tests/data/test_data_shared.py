"""The real offline datasets in <repo>/../shared/data (or $JAXROBUST_SHARED_DATA)."""

import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from jaxrobust.data import CIFAR10_CLASSES, load_dataset
from jaxrobust.data import files

CIFAR10_TRAIN_SHA256 = "61bea91e73ac2b02dfb856e685981dce64abe13d4e780aa98a1ac1e7c056d03b"
CIFAR10_TEST_SHA256 = "52a9dc125982c0440d5eed87474b2f521e96c45a98df08e4329aa42c692b9d9d"


@pytest.mark.parametrize("name, first_train, first_test, train_mean", [
    ("mnist", [5, 0, 4, 1, 9], [7, 2, 1, 0, 4], 0.1307),
    ("fashion_mnist", [9, 0, 0, 3, 0], [9, 2, 1, 1, 6], 0.2860),
])
def test_mnist_like(shared_data, name, first_train, first_test, train_mean):
  train = load_dataset(name, "train", data_dir=shared_data / name)
  test = load_dataset(name, "test", data_dir=shared_data)  # the parent works too
  assert (len(train), len(test)) == (60000, 10000)
  assert train.labels[:5].tolist() == first_train and test.labels[:5].tolist() == first_test
  for ds in (train, test):
    assert ds.images.dtype == np.uint8 and ds.image_shape == (28, 28, 1)
    assert ds.images.min() == 0 and ds.images.max() == 255
    assert ds.labels.dtype == np.int32 and np.bincount(ds.labels).size == 10
  # The customary normalization means (torchvision examples) of the training pixels.
  assert abs(train.images.mean() / 255 - train_mean) < 5e-4


def test_default_search_path_finds_shared(shared_data, monkeypatch):
  monkeypatch.setenv("JAXROBUST_SHARED_DATA", str(shared_data))
  assert load_dataset("mnist", "test").labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_cifar10_one_strip(shared_data):
  """Fast check of one class strip against its index lines."""
  folder = shared_data / "cifar10"
  strip = files.read_png_strip(folder / "test_3_cat.png")
  rows = [r for r in files.read_png_index(folder / "test_index.tsv") if r["label"] == "3"]
  assert strip.shape == (1000, 32, 32, 3) and strip.dtype == np.uint8
  assert len(rows) == 1000 and [int(r["row"]) for r in rows] == list(range(1000))
  assert {r["class"] for r in rows} == {"cat"}


def test_cifar10_first20_official_test_images(shared_data):
  test = load_dataset("cifar10", "test", data_dir=shared_data / "cifar10")
  offsets = np.concatenate([[0], np.cumsum(np.bincount(test.labels))])
  with open(shared_data / "cifar10" / "test_official_first20.tsv", newline="") as f:
    table = list(csv.DictReader(f, delimiter="\t"))
  assert len(table) == 20
  for entry in table:
    index, label = int(entry["official_test_index"]), int(entry["label"])
    reference = np.asarray(Image.open(
        shared_data / "cifar10_test_first20" / f"cifar10_{index:02d}_{label}.png").convert("RGB"))
    row = offsets[label] + int(entry["row_in_class_strip"])
    assert test.labels[row] == label and test.class_names[label] == entry["class"]
    np.testing.assert_array_equal(test.images[row], reference)


def test_cifar10_full_sha256_and_cache(shared_data):
  """All 60,000 images decode to the published bytes; the second load comes from the cache."""
  for split, digest, n in (("train", CIFAR10_TRAIN_SHA256, 50000),
                           ("test", CIFAR10_TEST_SHA256, 10000)):
    ds = load_dataset("cifar10", split, data_dir=shared_data)
    assert len(ds) == n and ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(ds.labels), n // 10)
    assert np.all(np.diff(ds.labels) >= 0)  # classes concatenated in label order
    if split == "train":  # the customary CIFAR-10 per-channel means
      channel_means = ds.images.reshape(-1, 3 * 32 * 32).mean(0).reshape(32, 32, 3).mean((0, 1))
      np.testing.assert_allclose(channel_means / 255, [0.4914, 0.4822, 0.4465], atol=5e-4)
    assert hashlib.sha256(ds.images.tobytes()).hexdigest() == digest
  # The second load of a split comes from the cache, with the same bytes.
  again = load_dataset("cifar10", "test", source="files", data_dir=shared_data)
  assert hashlib.sha256(again.images.tobytes()).hexdigest() == CIFAR10_TEST_SHA256
