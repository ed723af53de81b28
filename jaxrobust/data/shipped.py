"""The zero-setup dataset: scikit-learn's 1797 real 8x8 handwritten digits (UCI optdigits test).

Shipped as package data (``digits.npz``, 45 KB, byte-equal to scikit-learn's ``load_digits``), so loading
needs no scikit-learn. Pixels: sklearn gives integer intensities 0..16; we map v -> floor(v * 255 / 16 + 0.5) as uint8
(0 -> 0, 8 -> 128, 16 -> 255), so `as_float()` is v / 16 to within half a uint8 step. Images
stay 8x8x1 (no upsampling).

Split: stratified 80/20 with DIGITS_SPLIT_SEED = 0. For each class c (in order 0..9) the
indices of class c are permuted with `np.random.default_rng((DIGITS_SPLIT_SEED, c))` and the
first round(0.2 * n_c) go to test; each split is then sorted by original index. This gives
1438 train / 359 test and does not depend on the scikit-learn version.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.data.info import MNIST_CLASSES

DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")  # package data
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1797 digits as ((1797, 8, 8, 1) uint8, (1797,) int32); cached, read-only."""
  raw, target = digits_raw()
  values = raw.astype(np.float64)  # (1797, 8, 8), integers 0..16
  images = np.floor(values * (255.0 / 16.0) + 0.5).astype(np.uint8)[..., None]
  labels = target.astype(np.int32)
  images.flags.writeable = False  # Shared by every call: guard against in-place edits.
  labels.flags.writeable = False
  return images, labels


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's ``load_digits()`` as shipped in ``jaxrobust/data/digits.npz``: (images (1797, 8, 8) uint8 with
  the intensities 0..16, equal to ``load_digits().images``; target (1797,) uint8). No scikit-learn needed."""
  with np.load(DIGITS_FILE) as f:
    return f["values"], f["target"]


def digits_split_indices(labels: np.ndarray, seed: int = DIGITS_SPLIT_SEED,
                         test_fraction: float = DIGITS_TEST_FRACTION
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Stratified (train_idx, test_idx), each sorted ascending; see the module docstring."""
  train, test = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    idx = np.random.default_rng((seed, int(c))).permutation(idx)
    n_test = int(round(test_fraction * len(idx)))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_dataset(split: str = "train") -> ArrayDataset:
  """The shipped digits: split 'train' (1438), 'test' (359) or 'all' (1797, original order)."""
  images, labels = _digits_arrays()
  if split == "all":
    indices = np.arange(len(labels))
  elif split in ("train", "test"):
    train_idx, test_idx = digits_split_indices(labels)
    indices = train_idx if split == "train" else test_idx
  else:
    raise ValueError(f"digits has splits 'train', 'test' and 'all', got {split!r}")
  return ArrayDataset(images=images[indices], labels=labels[indices], num_classes=10,
                      name="digits", class_names=MNIST_CLASSES)
