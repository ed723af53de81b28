"""`load_dataset`: one entry point over the shipped, file and tfds sources."""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np

from jaxrobust.data import files, info, shipped, tfds_source
from jaxrobust.data.dataset import ArrayDataset, DatasetNotFoundError
from jaxrobust.data.info import DATASET_NAMES, check_name, resolve_label_mode

SOURCES = ("auto", "shipped", "files", "tfds")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_root() -> Path:
  """$JAXROBUST_SHARED_DATA, else <repo>/../shared/data (the project's offline data)."""
  env = os.environ.get("JAXROBUST_SHARED_DATA")
  return Path(env).expanduser() if env else _REPO_ROOT.parent / "shared" / "data"


def search_folders(name: str, data_dir: Union[str, Path, None] = None
                   ) -> list[tuple[Path, str]]:
  """(folder, why it is searched) in search order.

  With data_dir: data_dir itself and data_dir/<name> (it may be the folder or its parent).
  Without: each entry of $JAXROBUST_DATA_DIR (os.pathsep-separated parents) /<name>, then
  <shared data>/<name>, then ~/.jaxrobust/data/<name>. Default parents are never searched
  themselves, so e.g. MNIST files can't be mistaken for Fashion-MNIST (same file names).
  """
  if data_dir is not None:
    return [(f, "data_dir") for f in files.candidate_folders(data_dir, name)]
  out = []
  for entry in filter(None, os.environ.get("JAXROBUST_DATA_DIR", "").split(os.pathsep)):
    out += [(f, "$JAXROBUST_DATA_DIR") for f in
            files.candidate_folders(entry, name, include_base=False)]
  out += [(f, "shared data") for f in
          files.candidate_folders(shared_data_root(), name, include_base=False)]
  out += [(f, "user data") for f in
          files.candidate_folders("~/.jaxrobust/data", name, include_base=False)]
  return list(dict.fromkeys(out))


def find_files(name: str, split: str, data_dir: Union[str, Path, None] = None
               ) -> Optional[files.Found]:
  """The first folder in `search_folders` holding (name, split) in a known format, or None."""
  for folder, _ in search_folders(name, data_dir):
    found = files.find_in_folder(name, split, folder)
    if found is not None:
      return found
  return None


def _not_found(name: str, split: str, data_dir, tfds_note: Optional[str]) -> DatasetNotFoundError:
  lines = [f"dataset {name!r} (split {split!r}) was not found."]
  if files.supports_files(name):
    lines.append("Looked for files in:")
    for folder, why in search_folders(name, data_dir):
      state = "" if folder.is_dir() else "  (does not exist)"
      lines.append(f"  {folder}  [{why}]{state}")
    lines.append("for any of these file patterns:")
    lines += [f"  {p}" for p in files.file_patterns(name, split)]
  if tfds_note:
    lines.append(f"tfds: {tfds_note}")
  lines.append("Ways to supply it:")
  if files.supports_files(name):
    lines.append(f"  - load_dataset({name!r}, data_dir=DIR) with the official files in DIR "
                 f"or DIR/{name}")
    lines.append(f"  - export JAXROBUST_DATA_DIR=PARENT with the files in PARENT/{name}")
  lines.append(f"  - tfds: pip install tensorflow-cpu, then prepare {name!r} (tfds build, "
               "or JAXROBUST_TFDS_DOWNLOAD=1 with source='tfds'; for mnist/fashion_mnist "
               "offline: jaxrobust.data.build_tfds_from_manual(name, manual_dir, data_dir))")
  lines.append("  - or use the shipped zero-setup dataset: load_dataset('digits')")
  return DatasetNotFoundError("\n".join(lines))


def _finish(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
            class_names, where: str) -> ArrayDataset:
  expected = info.DATASET_INFO[name].image_shape
  if name != "celeb_a" and images.shape[1:] != expected:
    raise ValueError(f"{where}: {name} images should be (N, {', '.join(map(str, expected))}), "
                     f"got {images.shape}")
  return ArrayDataset(images=images, labels=labels, num_classes=num_classes, name=name,
                      class_names=class_names)


def _from_found(name: str, found: files.Found, label_mode: Optional[str], num_classes: int,
                class_names) -> ArrayDataset:
  from jaxrobust.data.checksums import check_files
  check_files(name, found.files)
  try:
    arrays = found.load()
  except (EOFError, OSError, zlib.error, tarfile.TarError, pickle.UnpicklingError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise ValueError(f"{name} ({found.description}): cannot read {', '.join(map(str, found.files))}: the file is "
                     f"truncated or corrupt ({type(e).__name__}: {e}); download it again") from e
  labels = arrays["labels"]
  if name == "cifar100" and label_mode == "coarse":
    # Sources with fine labels only (e.g. an .npz) use the standard fine -> coarse table.
    labels = arrays.get("coarse_labels", None)
    if labels is None:
      labels = info.CIFAR100_FINE_TO_COARSE[arrays["labels"]]
  where = f"{found.description} at {found.files[0].parent}"
  return _finish(name, arrays["images"], labels, num_classes, class_names, where)


def load_dataset(name: str, split: str = "train", *, source: str = "auto",
                 data_dir: Union[str, Path, None] = None,
                 label_mode: Optional[str] = None) -> ArrayDataset:
  """Loads a whole split into memory as an ArrayDataset (uint8 images).

  name: one of DATASET_NAMES. split: 'train'/'test' ('extra' for svhn_cropped,
    'validation' for celeb_a, 'all' for digits; any tfds split string with source='tfds').
  source: 'shipped' (digits only), 'files' (official formats in data_dir or the default
    search path, see `search_folders`), 'tfds' (a dataset prepared in tfds' data_dir, or
    data_dir if given; set JAXROBUST_TFDS_DOWNLOAD=1 to let tfds download and build it), or
    'auto': shipped for digits, else files if found, else tfds.
  label_mode: cifar100 'fine' (default) / 'coarse'; celeb_a 'attr:<Attribute>' (required).
  Raises DatasetNotFoundError (a FileNotFoundError) listing where it looked and the remedies;
  ValueError for unknown names, sources, splits or label modes.
  """
  check_name(name)
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
  mode, num_classes, class_names = resolve_label_mode(name, label_mode)
  splits = info.DATASET_INFO[name].splits + (("all",) if name == "digits" else ())
  if source != "tfds" and split not in splits:
    raise ValueError(f"{name} has splits {', '.join(splits)}, got {split!r} "
                     "(tfds split strings like 'train[:10%]' need source='tfds'; "
                     "otherwise use ArrayDataset.subset/take)")

  if name == "digits":
    if source not in ("auto", "shipped"):
      raise ValueError(f"digits comes only from source='shipped' (got {source!r})")
    return shipped.load_digits_dataset(split)
  if source == "shipped":
    raise ValueError(f"only 'digits' is shipped; load {name!r} with source 'files', 'tfds' "
                     "or 'auto'")

  if source in ("auto", "files") and files.supports_files(name):
    found = find_files(name, split, data_dir)
    if found is not None:
      return _from_found(name, found, mode, num_classes, class_names)
    if source == "files":
      raise _not_found(name, split, data_dir, None)
  elif source == "files":
    raise ValueError(f"{name} cannot be read from files; use source='tfds'")

  # tfds reads only already-prepared data unless downloads are opted into: offline, a
  # download retries for minutes before failing (and usually needs TensorFlow anyway).
  tfds_dir = None if data_dir is None else str(data_dir)
  download = source == "tfds" and os.environ.get("JAXROBUST_TFDS_DOWNLOAD", "") == "1"
  try:
    images, labels = tfds_source.load_tfds_arrays(name, split, mode, data_dir=tfds_dir,
                                                  download=download)
  except (ImportError, FileNotFoundError) as err:
    raise _not_found(name, split, data_dir, f"{err} ({tfds_source.tfds_status()})") from err
  return _finish(name, images, labels, num_classes, class_names, f"tfds {name}")


__all__ = ["load_dataset", "search_folders", "find_files", "shared_data_root", "SOURCES",
           "DATASET_NAMES"]
