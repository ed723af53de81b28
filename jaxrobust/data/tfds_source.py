"""Loading through tensorflow-datasets, without needing TensorFlow where possible.

Order of attempts for a prepared dataset:
1. `tfds.data_source(...)`: random access over array_record files; pure Python, no TF.
2. `tfds.load(..., batch_size=-1)` + `tfds.as_numpy`: reads TFRecord files; needs TensorFlow.
Preparing (downloading/building) a dataset mostly needs TensorFlow too; for MNIST and
Fashion-MNIST from local official files use `build_tfds_from_manual`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from jaxrobust.data import info

# Records per data_source read; bounds the transient list of decoded dicts.
_CHUNK = 4096


def _import_tfds():
  """The tensorflow_datasets module, or None if not installed (a seam for tests)."""
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    return None
  return tfds


def tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def tfds_status() -> str:
  """One line saying what of the tfds stack is installed."""
  tfds = _import_tfds()
  parts = [f"tensorflow_datasets {tfds.__version__} installed" if tfds is not None
           else "tensorflow_datasets not installed"]
  parts.append("tensorflow installed" if tensorflow_installed() else "tensorflow NOT installed")
  parts.append("array_record installed" if importlib.util.find_spec("array_record")
               else "array_record NOT installed")
  return ", ".join(parts)


def tfds_prepared_dir(name: str, data_dir: Optional[str] = None) -> tuple[Optional[str], str]:
  """(path of the prepared dataset or None, the folder it was looked for in)."""
  tfds = _import_tfds()
  if tfds is None:
    return None, "(tensorflow_datasets not installed)"
  # tfds logs a warning through absl for every unprepared folder; the caller reports instead.
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  finally:
    absl_logger.setLevel(level)
  path = str(builder.data_path)
  return (path if builder.is_prepared() else None), path


def _labels_from_features(name: str, label_mode: Optional[str], features: dict) -> np.ndarray:
  """Label column(s) of decoded tfds features, per label_mode (see info.resolve_label_mode)."""
  if name == "celeb_a":
    attr = label_mode[len("attr:"):]
    return np.asarray(features["attributes"][attr]).astype(np.int32)
  if name == "cifar100" and label_mode == "coarse":
    return np.asarray(features["coarse_label"]).astype(np.int32)
  return np.asarray(features["label"]).astype(np.int32)


def _read_data_source(source: Any, name: str, label_mode: Optional[str]
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Decodes every record of a tfds random-access source into (images, labels)."""
  n = len(source)
  images, labels = None, np.empty(n, np.int32)
  get_many = getattr(source, "__getitems__", None)
  for start in range(0, n, _CHUNK):
    keys = list(range(start, min(n, start + _CHUNK)))
    records = get_many(keys) if get_many is not None else [source[k] for k in keys]
    for offset, record in enumerate(records):
      image = np.asarray(record["image"])
      if images is None:  # Preallocate once the image shape is known (avoids a 2x copy).
        images = np.empty((n,) + image.shape, np.uint8)
      images[start + offset] = image
      labels[start + offset] = _labels_from_features(
          name, label_mode, {k: v for k, v in record.items() if k != "image"})
  if images is None:
    images = np.zeros((0,) + info.DATASET_INFO[name].image_shape, np.uint8)
  return images, labels


def load_tfds_arrays(name: str, split: str, label_mode: Optional[str] = None, *,
                     data_dir: Optional[str] = None, download: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, H, W, C) uint8, labels (N,) int32) of a tfds dataset.

  download=False reads only an already-prepared dataset (raises FileNotFoundError otherwise);
  download=True lets tfds download and prepare it (network, and usually TensorFlow, needed).
  """
  tfds = _import_tfds()
  if tfds is None:
    raise ImportError(f"source='tfds' needs tensorflow_datasets ({tfds_status()})")
  prepared, looked_in = tfds_prepared_dir(name, data_dir)
  if prepared is None and not download:
    raise FileNotFoundError(f"tfds dataset {name!r} is not prepared in {looked_in}")
  errors = []
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    return _read_data_source(source, name, label_mode)
  except Exception as err:  # TFRecord-only data, missing array_record, failed download, ...
    errors.append(f"tfds.data_source: {type(err).__name__}: {err}")
  if tensorflow_installed():
    try:
      tensors = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, batch_size=-1,
                                        download=download))
      return (np.asarray(tensors["image"], np.uint8),
              _labels_from_features(name, label_mode, tensors))
    except Exception as err:
      errors.append(f"tfds.load: {type(err).__name__}: {err}")
  else:
    errors.append("tfds.load skipped: it needs tensorflow (pip install tensorflow-cpu)")
  raise RuntimeError(f"could not load tfds dataset {name!r} split {split!r} "
                     f"({tfds_status()}):\n  " + "\n  ".join(errors))


def build_tfds_from_manual(name: str, manual_dir: str, data_dir: Optional[str] = None) -> str:
  """Prepares tfds 'mnist' or 'fashion_mnist' from the official .gz files in `manual_dir`.

  No network needed. Writes array_record files, so later loads work without TensorFlow via
  `tfds.data_source`. Needs TensorFlow for the build itself. Returns the prepared folder.
  """
  if name not in ("mnist", "fashion_mnist"):
    raise ValueError(f"build_tfds_from_manual supports 'mnist' and 'fashion_mnist', got {name!r}")
  tfds = _import_tfds()
  if tfds is None or not tensorflow_installed():
    raise ImportError("build_tfds_from_manual needs tensorflow_datasets and tensorflow "
                      f"({tfds_status()}); install with: pip install tensorflow-cpu")
  if not Path(manual_dir).is_dir():
    raise FileNotFoundError(f"manual_dir {manual_dir} is not a directory")
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return str(builder.data_path)
