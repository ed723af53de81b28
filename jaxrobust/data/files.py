"""Readers for the official on-disk dataset formats, and detection of which one a folder holds.

Formats (each reader returns uint8 NHWC images unless noted):
* MNIST / Fashion-MNIST idx files, gzipped or not (`read_idx`).
* CIFAR-10/100 python pickles: dict with b'data' (N, 3072) uint8, row-major CHW, and
  b'labels' (CIFAR-10) or b'fine_labels' + b'coarse_labels' (CIFAR-100) (`read_cifar_pickle`);
  in an extracted folder or straight from the official .tar.gz.
* CIFAR-10/100 binary records (label byte(s) + 3072 CHW bytes) (`read_cifar_binary`).
* The PNG-strip CIFAR-10 layout: `{split}_{label}_{class}.png` of shape (32*N, 32, 3) and
  `{split}_index.tsv` (`read_png_strips`). Rows are sorted by (label, original filename),
  NOT in the official batch order.
* SVHN `{split}_32x32.mat` (label 10 means digit 0, mapped to 0 as tfds does).
* `.npz` with x_{split}/y_{split} (Keras layout) or images/labels (`read_npz`); images may
  be float in [0, 1].

`find_in_folder(name, split, folder)` returns a `Found` whose `load()` gives a dict with
'images', 'labels' and, for CIFAR-100, 'coarse_labels' ('labels' are the fine ones).
Pickles execute code when loaded: only point data_dir at files you trust.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import functools
import gzip
import os
import pickle
import re
import tarfile
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from jaxrobust.data import cache

PathLike = Union[str, Path]

# idx type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------------------------
# Readers.


def read_idx(path: PathLike) -> np.ndarray:
  """Reads an idx file (optionally .gz) into an array of the stored shape and dtype."""
  path = Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"{path}: not an idx file (magic bytes {data[:4]!r})")
  dtype = np.dtype(_IDX_DTYPES[data[2]])
  ndim = data[3]
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  offset = 4 + 4 * ndim
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - offset != expected:
    raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but "
                     f"{len(data) - offset} data bytes follow")
  return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _chw_rows_to_nhwc(data: np.ndarray, where: str) -> np.ndarray:
  """(N, 3072) uint8 row-major CHW rows -> (N, 32, 32, 3)."""
  data = np.asarray(data)
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise ValueError(f"{where}: CIFAR data must be (N, 3072), got {data.shape}")
  return np.ascontiguousarray(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_cifar_pickle(source: Union[PathLike, bytes]) -> dict:
  """One CIFAR python pickle (a path or its bytes) -> {'images', 'labels'[, 'coarse_labels']}.

  For CIFAR-100 'labels' are the fine labels.
  """
  where = "<bytes>" if isinstance(source, bytes) else str(source)
  raw = source if isinstance(source, bytes) else Path(source).read_bytes()
  batch = pickle.loads(raw, encoding="bytes")
  # Official files have bytes keys; re-pickled copies often have str keys.
  batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
  out = {"images": _chw_rows_to_nhwc(batch["data"], where)}
  if "fine_labels" in batch:
    out["labels"] = np.asarray(batch["fine_labels"], np.int32)
    out["coarse_labels"] = np.asarray(batch["coarse_labels"], np.int32)
  elif "labels" in batch:
    out["labels"] = np.asarray(batch["labels"], np.int32)
  else:
    raise ValueError(f"{where}: no b'labels' or b'fine_labels' in the CIFAR pickle")
  return out


def read_cifar_binary(raw: bytes, cifar100: bool) -> dict:
  """CIFAR binary records -> {'images', 'labels'[, 'coarse_labels']}.

  CIFAR-10 record: label byte + 3072 CHW bytes; CIFAR-100: coarse byte, fine byte, 3072 bytes.
  """
  head = 2 if cifar100 else 1
  records = np.frombuffer(raw, np.uint8)
  if records.size % (head + 3072):
    raise ValueError(f"CIFAR binary size {records.size} is not a multiple of {head + 3072}")
  records = records.reshape(-1, head + 3072)
  out = {"images": _chw_rows_to_nhwc(records[:, head:], "CIFAR binary")}
  out["labels"] = records[:, head - 1].astype(np.int32)
  if cifar100:
    out["coarse_labels"] = records[:, 0].astype(np.int32)
  return out


def _concat(parts: list[dict]) -> dict:
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def png_strip_files(folder: PathLike, split: str) -> tuple[Path, list[tuple[int, str, Path]]]:
  """(index_tsv, [(label, class_name, png_path)] sorted by label) of the PNG-strip layout."""
  folder = Path(folder)
  pattern = re.compile(rf"^{re.escape(split)}_(\d+)_(.+)\.png$")
  strips = sorted((int(m.group(1)), m.group(2), p) for p in folder.glob(f"{split}_*.png")
                  if (m := pattern.match(p.name)))
  return folder / f"{split}_index.tsv", strips


def read_png_strip(path: PathLike) -> np.ndarray:
  """One strip of shape (32*N, 32, 3) -> (N, 32, 32, 3) uint8."""
  from PIL import Image  # Imported here: only this layout needs pillow.
  with Image.open(path) as image:
    if image.mode != "RGB":
      raise ValueError(f"{path}: expected an RGB PNG, got mode {image.mode}")
    strip = np.asarray(image)
  if strip.ndim != 3 or strip.shape[0] % 32 or strip.shape[1:] != (32, 3):
    raise ValueError(f"{path}: expected shape (32*N, 32, 3), got {strip.shape}")
  return strip.reshape(-1, 32, 32, 3)


def read_png_index(index_path: PathLike) -> list[dict]:
  """The rows of `{split}_index.tsv` (columns row, label, class, original_filename)."""
  with open(index_path, newline="") as f:
    return list(csv.DictReader(f, delimiter="\t"))


def read_png_strips(folder: PathLike, split: str) -> dict:
  """All class strips of a split, classes concatenated in label order -> {'images', 'labels'}.

  Checks the strips against `{split}_index.tsv`: labels 0..K-1 present, row counts match,
  rows numbered 0..n-1 within each class, class names agree with the file names.
  """
  index_path, strips = png_strip_files(folder, split)
  rows = read_png_index(index_path)
  if [s[0] for s in strips] != list(range(len(strips))) or not strips:
    raise ValueError(f"{folder}: need strips {split}_0_*.png .. {split}_K_*.png with contiguous "
                     f"labels, found {[p.name for _, _, p in strips]}")
  # Pillow decodes without the GIL, so threads cut the ~4 s single-core decode of CIFAR train.
  workers = max(1, min(len(strips), os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    decoded = list(pool.map(read_png_strip, [path for _, _, path in strips]))
  images, labels = [], []
  for (label, class_name, path), strip in zip(strips, decoded):
    class_rows = [r for r in rows if int(r["label"]) == label]
    if [int(r["row"]) for r in class_rows] != list(range(len(class_rows))):
      raise ValueError(f"{index_path}: rows of label {label} are not numbered 0..n-1")
    if any(r["class"] != class_name for r in class_rows):
      raise ValueError(f"{index_path}: class names of label {label} disagree with {path.name}")
    if len(strip) != len(class_rows):
      raise ValueError(f"{path}: {len(strip)} images but {index_path.name} lists "
                       f"{len(class_rows)} for label {label}")
    images.append(strip)
    labels.append(np.full(len(strip), label, np.int32))
  if sum(len(x) for x in images) != len(rows):
    raise ValueError(f"{index_path}: lists labels that have no strip")
  return {"images": np.concatenate(images), "labels": np.concatenate(labels)}


def _as_nhwc(images: np.ndarray, where: str) -> np.ndarray:
  """(N, H, W) gets C=1; (N, C, H, W) with C in (1, 3) (and last axis not) becomes NHWC."""
  if images.ndim == 3:
    return images[..., None]
  if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
  if images.ndim != 4:
    raise ValueError(f"{where}: images must be (N, H, W[, C]), got {images.shape}")
  return images


def read_npz(path: PathLike, split: Optional[str] = None) -> dict:
  """An .npz -> {'images', 'labels'[, 'coarse_labels']}.

  Keys: x_{split}/y_{split} (Keras layout; needs `split`; optional y_{split}_coarse), or
  images/labels (optional coarse_labels). Labels of shape (N, 1) are flattened. Images are
  kept uint8, or converted to float32 when floating (must lie in [0, 1]).
  """
  path = Path(path)
  with np.load(path, allow_pickle=False) as npz:
    keys = set(npz.files)
    if split is not None and f"x_{split}" in keys:
      x_key, y_key, coarse_key = f"x_{split}", f"y_{split}", f"y_{split}_coarse"
    elif "images" in keys:
      x_key, y_key, coarse_key = "images", "labels", "coarse_labels"
    else:
      raise ValueError(f"{path}: expected keys x_{split}/y_{split} or images/labels, "
                       f"found {sorted(keys)}")
    if y_key not in keys:
      raise ValueError(f"{path}: has {x_key} but no {y_key}")
    out = {"images": _as_nhwc(npz[x_key], str(path)),
           "labels": np.asarray(npz[y_key]).reshape(-1).astype(np.int32)}
    if coarse_key in keys:
      out["coarse_labels"] = np.asarray(npz[coarse_key]).reshape(-1).astype(np.int32)
  if np.issubdtype(out["images"].dtype, np.floating):
    out["images"] = out["images"].astype(np.float32)
  elif out["images"].dtype != np.uint8:  # Integer pixels from other writers, e.g. int64.
    images = out["images"]
    if images.size and (images.min() < 0 or images.max() > 255):
      raise ValueError(f"{path}: integer images must lie in 0..255, got range "
                       f"[{images.min()}, {images.max()}]")
    out["images"] = images.astype(np.uint8)
  return out


def read_svhn_mat(path: PathLike) -> dict:
  """SVHN cropped `{split}_32x32.mat`: X (32, 32, 3, N), y (N, 1) in 1..10 (10 = digit 0)."""
  try:
    from scipy.io import loadmat  # only this format needs scipy: the [svhn] extra
  except ImportError as e:
    raise ImportError(f"reading SVHN's .mat file {str(path)!r} needs scipy: pip install 'jaxrobust[svhn]' "
                      "(or pip install scipy)") from e
  mat = loadmat(str(path))
  images = np.ascontiguousarray(np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2))
  labels = np.asarray(mat["y"]).reshape(-1).astype(np.int32) % 10
  return {"images": images, "labels": labels}


# ---------------------------------------------------------------------------------------------
# Format detection.


@dataclasses.dataclass(frozen=True)
class Found:
  """A split located on disk: which format, which files, and how to load it."""
  description: str
  files: tuple[Path, ...]
  load: Callable[[], dict]


def _first_existing(folder: Path, names: list[str]) -> Optional[Path]:
  for name in names:
    if (folder / name).is_file():
      return folder / name
  return None


def _probe_idx(name: str, split: str, folder: Path) -> Optional[Found]:
  prefix = "train" if split == "train" else "t10k"
  images = _first_existing(folder, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte",
                                    f"{prefix}-images.idx3-ubyte"])
  labels = _first_existing(folder, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte",
                                    f"{prefix}-labels.idx1-ubyte"])
  if images is None or labels is None:
    return None

  def load():
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.shape != (x.shape[0],):
      raise ValueError(f"{images} / {labels}: shapes {x.shape} / {y.shape} do not match")
    return {"images": x.astype(np.uint8)[..., None], "labels": y.astype(np.int32)}
  return Found("idx", (images, labels), load)


# name -> kind -> (extracted folder, official tarball, {split: member files}).
_CIFAR_LAYOUTS = {
    "cifar10": {
        "pickle": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                   {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}),
        "binary": ("cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                   {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                    "test": ["test_batch.bin"]}),
    },
    "cifar100": {
        "pickle": ("cifar-100-python", "cifar-100-python.tar.gz",
                   {"train": ["train"], "test": ["test"]}),
        "binary": ("cifar-100-binary", "cifar-100-binary.tar.gz",
                   {"train": ["train.bin"], "test": ["test.bin"]}),
    },
}


def _cifar_reader(name: str, kind: str) -> Callable[[bytes], dict]:
  if kind == "pickle":
    return read_cifar_pickle
  return functools.partial(read_cifar_binary, cifar100=name == "cifar100")


def _read_cifar_files(paths: tuple[Path, ...], read: Callable[[bytes], dict]) -> dict:
  return _concat([read(p.read_bytes()) for p in paths])


def _read_cifar_tar(tar_path: Path, members: list[str], read: Callable[[bytes], dict]) -> dict:
  with tarfile.open(tar_path, "r:*") as tar:
    parts = []
    for member in members:
      f = tar.extractfile(tar.getmember(member))
      if f is None:
        raise ValueError(f"{tar_path}: {member} is not a regular file")
      parts.append(read(f.read()))
  return _concat(parts)


def _probe_cifar(name: str, split: str, folder: Path) -> Optional[Found]:
  layouts = _CIFAR_LAYOUTS[name]
  # Extracted files first: either folder/<subdir>/<member> or data_dir pointing at <subdir>.
  for kind, (subdir, _, members) in layouts.items():
    for root in (folder / subdir, folder):
      paths = tuple(root / m for m in members[split])
      if all(p.is_file() for p in paths):
        return Found(f"{kind} folder", paths,
                     functools.partial(_read_cifar_files, paths, _cifar_reader(name, kind)))
  # Tarballs are read in place (no extraction) and cached, since gunzip takes seconds.
  for kind, (subdir, tar_name, members) in layouts.items():
    tar_path = folder / tar_name
    if tar_path.is_file():
      build = functools.partial(_read_cifar_tar, tar_path,
                                [f"{subdir}/{m}" for m in members[split]],
                                _cifar_reader(name, kind))
      load = functools.partial(cache.cached_arrays, f"{name}_{kind}tar_{split}", [tar_path],
                               build, (32, 32, 3))
      return Found(f"{kind} tarball (cached)", (tar_path,), load)
  return None


def _probe_png_strips(name: str, split: str, folder: Path) -> Optional[Found]:
  index_path, strips = png_strip_files(folder, split)
  if not index_path.is_file() or not strips:
    return None
  files = (index_path,) + tuple(p for _, _, p in strips)

  def load():
    expected_n = len(read_png_index(index_path))
    return cache.cached_arrays(f"{name}_pngstrips_{split}", files,
                               lambda: read_png_strips(folder, split), (32, 32, 3), expected_n)
  return Found("PNG strips (cached)", files, load)


def _probe_svhn(name: str, split: str, folder: Path) -> Optional[Found]:
  path = _first_existing(folder, [f"{split}_32x32.mat"])
  if path is None:
    return None
  return Found("SVHN .mat", (path,), lambda: read_svhn_mat(path))


def _probe_npz(name: str, split: str, folder: Path) -> Optional[Found]:
  combined = folder / f"{name}.npz"
  if combined.is_file():
    with np.load(combined, allow_pickle=False) as npz:
      has_split = f"x_{split}" in npz.files
    if has_split:
      return Found(".npz (x_/y_ keys)", (combined,), lambda: read_npz(combined, split))
  path = _first_existing(folder, [f"{name}_{split}.npz", f"{split}.npz"])
  if path is None:
    return None
  return Found(".npz (images/labels)", (path,), lambda: read_npz(path, split))


# name -> [(probe, pattern shown in error messages)]; probes are tried in this order.
_NPZ_PATTERN = ("{name}.npz (keys x_{split}, y_{split}) | {name}_{split}.npz or {split}.npz "
                "(keys images, labels)")
_FORMATS: dict[str, list[tuple[Callable, str]]] = {
    "mnist": [(_probe_idx, "{idx}-images-idx3-ubyte[.gz] + {idx}-labels-idx1-ubyte[.gz]"),
              (_probe_npz, _NPZ_PATTERN)],
    "cifar10": [(_probe_png_strips, "{split}_index.tsv + {split}_<label>_<class>.png strips"),
                (_probe_cifar, "[cifar-10-batches-py/]{pickles} | cifar-10-python.tar.gz | "
                               "[cifar-10-batches-bin/]{binaries} | cifar-10-binary.tar.gz"),
                (_probe_npz, _NPZ_PATTERN)],
    "cifar100": [(_probe_cifar, "[cifar-100-python/]{pickles} | cifar-100-python.tar.gz | "
                                "[cifar-100-binary/]{binaries} | cifar-100-binary.tar.gz"),
                 (_probe_npz, _NPZ_PATTERN)],
    "svhn_cropped": [(_probe_svhn, "{split}_32x32.mat"), (_probe_npz, _NPZ_PATTERN)],
}
_FORMATS["fashion_mnist"] = _FORMATS["mnist"]

# Folder names tried under a parent directory, besides the dataset name itself.
FOLDER_ALIASES = {
    "mnist": ("MNIST/raw", "MNIST"),
    "fashion_mnist": ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10",),
    "cifar100": ("cifar-100",),
    "svhn_cropped": ("svhn", "SVHN"),
}


def supports_files(name: str) -> bool:
  """Whether `name` can be read from files at all (celeb_a and digits cannot)."""
  return name in _FORMATS


def file_patterns(name: str, split: str) -> list[str]:
  """Human-readable file patterns searched for (name, split), for error messages."""
  if name not in _FORMATS:
    return []
  layout = _CIFAR_LAYOUTS.get(name)
  fields = {"name": name, "split": split, "idx": "train" if split == "train" else "t10k"}
  if layout is not None:
    fields["pickles"] = "{" + ",".join(layout["pickle"][2].get(split, ["?"])) + "}"
    fields["binaries"] = "{" + ",".join(layout["binary"][2].get(split, ["?"])) + "}"
  return [pattern.format(**fields) for _, pattern in _FORMATS[name]]


def find_in_folder(name: str, split: str, folder: PathLike) -> Optional[Found]:
  """The first format of (name, split) present in `folder` itself, or None."""
  folder = Path(folder)
  if name not in _FORMATS or not folder.is_dir():
    return None
  if name.startswith("cifar") and split not in ("train", "test"):
    return None
  for probe, _ in _FORMATS[name]:
    found = probe(name, split, folder)
    if found is not None:
      return found
  return None


def candidate_folders(base: PathLike, name: str, include_base: bool = True) -> list[Path]:
  """Folders to search under `base`: base itself (if asked), base/<name>, base/<aliases>."""
  base = Path(base).expanduser()
  subdirs = (name,) + FOLDER_ALIASES.get(name, ())
  folders = ([base] if include_base else []) + [base / s for s in subdirs]
  return list(dict.fromkeys(folders))

