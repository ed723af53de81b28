"""The in-memory dataset container every loader returns, and the missing-data error."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from jaxrobust import threat


class DatasetNotFoundError(FileNotFoundError):
  """A dataset's files are not where we looked; the message says where and how to supply them."""


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
  """A whole split held in host memory.

  images: (N, H, W, C), either uint8 in 0..255 (what every loader returns) or float32 in
    [0, 1] (for derived data, e.g. stored adversarial examples). Other float dtypes are
    converted to float32; other integer dtypes are rejected.
  labels: (N,) int32 in [0, num_classes); any integer dtype is converted to int32.
  name: the dataset name (e.g. 'cifar10', a key of DATASET_INFO for loaded data), no split.
  class_names: num_classes names, or None.
  Use dataclasses.replace(ds, labels=..., num_classes=...) to relabel (validation reruns).
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str
  class_names: Optional[tuple[str, ...]] = None

  def __post_init__(self):
    images = np.asarray(self.images)
    labels = np.asarray(self.labels)
    where = f"ArrayDataset {self.name!r}"
    if images.ndim != 4:
      raise ValueError(f"{where}: images must be (N, H, W, C), got shape {images.shape}")
    if np.issubdtype(images.dtype, np.floating):
      images = images.astype(np.float32, copy=False)
      threat.check_pixel_values(images, f"{where}: float images")
    elif images.dtype != np.uint8:
      raise ValueError(f"{where}: images must be uint8 (0..255) or float32 in [0, 1], "
                       f"got dtype {images.dtype}")
    if labels.shape != (images.shape[0],):
      raise ValueError(f"{where}: labels must have shape ({images.shape[0]},) to match the "
                       f"images, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    num_classes = int(self.num_classes)
    if num_classes < 1:
      raise ValueError(f"{where}: num_classes must be >= 1, got {self.num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f"{where}: labels must lie in [0, {num_classes}), got range "
                       f"[{labels.min()}, {labels.max()}]")
    class_names = self.class_names
    if class_names is not None:
      class_names = tuple(str(c) for c in class_names)
      if len(class_names) != num_classes:
        raise ValueError(f"{where}: {len(class_names)} class_names for {num_classes} classes")
    # Frozen: normalized values go in through object.__setattr__.
    object.__setattr__(self, "images", images)
    object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "class_names", class_names)

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def __repr__(self) -> str:
    return (f"ArrayDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"dtype={self.images.dtype}, num_classes={self.num_classes})")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C)."""
    return tuple(int(d) for d in self.images.shape[1:])

  def subset(self, indices) -> "ArrayDataset":
    """The rows at `indices` ((n,) ints, or an (N,) bool mask), in that order (copies)."""
    indices = np.asarray(indices)
    if indices.dtype == bool:
      if indices.shape != (len(self),):
        raise ValueError(f"bool mask must have shape ({len(self)},), got {indices.shape}")
      indices = np.flatnonzero(indices)
    elif indices.size == 0:
      indices = indices.astype(np.int64)
    elif not np.issubdtype(indices.dtype, np.integer):
      raise ValueError(f"indices must be integers or a bool mask, got dtype {indices.dtype}")
    return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])

  def take(self, n: int) -> "ArrayDataset":
    """The first min(n, len) rows."""
    if n < 0:
      raise ValueError(f"take(n) needs n >= 0, got {n}")
    return self.subset(np.arange(min(int(n), len(self))))

  def sample(self, n: int, seed: int) -> "ArrayDataset":
    """min(n, len) distinct rows drawn with ``np.random.default_rng(seed)``, kept in file order."""
    if n < 0:
      raise ValueError(f"sample(n) needs n >= 0, got {n}")
    rows = np.random.default_rng(int(seed)).choice(len(self), min(int(n), len(self)), replace=False)
    return self.subset(np.sort(rows))

  def as_float(self, indices=None) -> np.ndarray:
    """float32 (n, H, W, C) in [0, 1] for the rows at `indices` (all rows if None)."""
    images = self.images if indices is None else self.images[np.asarray(indices)]
    if images.dtype == np.uint8:
      # Division (not * 1/255) is exactly rounded and matches torchvision's ToTensor.
      return images.astype(np.float32) / np.float32(255.0)
    return np.array(images, dtype=np.float32, copy=True)


def reduce_split(ds: "ArrayDataset", n: int, seed=None, what: str = "subset") -> "ArrayDataset":
  """A config's ``data.train_subset`` / ``test_subset``: the first n rows, or with ``data.subset_seed`` a
  random n rows (file order kept).

  The first n rows of a class-sorted file (the CIFAR-10 PNG strips are sorted by label) would hold one
  or two classes and give a silently wrong accuracy, so that case is an error that names the fix.
  """
  if seed is not None:
    return ds.sample(n, seed)
  check_prefix_classes(ds, n, f"data.{what}={n}",
                       "set data.subset_seed (e.g. data.subset_seed=0) to draw a random subset instead")
  return ds.take(n)


def check_prefix_classes(ds: "ArrayDataset", n: int, what: str, fix: str = "") -> None:
  """Raises if the first n rows (n >= 2 x #classes) miss classes the split has: a class-sorted file."""
  head = np.asarray(ds.labels[:int(n)])
  classes_all = np.unique(ds.labels).size
  classes_kept = np.unique(head).size
  if classes_kept < classes_all and head.size >= 2 * classes_all:
    fix = fix or ("use data in the official order (official files or tfds) or evaluate every point: the first "
                  "rows of a class-sorted split measure only a few classes")
    raise ValueError(f"{what} takes the first {head.size} rows, which hold only {classes_kept} of the split's "
                     f"{classes_all} classes (the file is ordered by class); {fix}")
