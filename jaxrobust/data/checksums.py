"""Known checksums of the official dataset files, so a folder of one dataset is never read as another.

``check_files(name, paths)`` hashes each file whose name is an official one (MD5 and SHA-256 in one read) and
refuses a file that is a known official file of another dataset (e.g. Fashion-MNIST's idx files in the folder
given for MNIST: same names, same shapes, wrong pictures). Digests are cached by (path, size, mtime) in
``$JAXROBUST_CACHE_DIR/file_digests.json``, so the check is paid once per file. Files with unknown digests (other
copies, re-compressed archives) are not refused: nothing is known about them.

Sources: MD5 as listed by torchvision's dataset classes (MNIST, FashionMNIST, CIFAR10, CIFAR100), SHA-256 as
registered by tensorflow-datasets (``url_checksums/mnist.txt``, ``fashion_mnist.txt``); the MNIST and
Fashion-MNIST copies in the shared data folder match both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from jaxrobust.data import cache

_log = logging.getLogger(__name__)

# digest -> (dataset, official file name)
KNOWN: dict[str, tuple[str, str]] = {
    # MNIST (torchvision MD5, tfds SHA-256)
    "f68b3c2dcbeaaa9fbdd348bbdeb94873": ("mnist", "train-images-idx3-ubyte.gz"),
    "d53e105ee54ea40749a09fcbcd1e9432": ("mnist", "train-labels-idx1-ubyte.gz"),
    "9fb629c4189551a2d022fa330f9573f3": ("mnist", "t10k-images-idx3-ubyte.gz"),
    "ec29112dd5afa0611ce80d1b7f02629c": ("mnist", "t10k-labels-idx1-ubyte.gz"),
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609": ("mnist", "train-images-idx3-ubyte.gz"),
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c": ("mnist", "train-labels-idx1-ubyte.gz"),
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6": ("mnist", "t10k-images-idx3-ubyte.gz"),
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6": ("mnist", "t10k-labels-idx1-ubyte.gz"),
    # Fashion-MNIST
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d": ("fashion_mnist", "train-images-idx3-ubyte.gz"),
    "25c81989df183df01b3e8a0aad5dffbe": ("fashion_mnist", "train-labels-idx1-ubyte.gz"),
    "bef4ecab320f06d8554ea6380940ec79": ("fashion_mnist", "t10k-images-idx3-ubyte.gz"),
    "bb300cfdad3c16e7a12a480ee83cd310": ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"),
    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84": ("fashion_mnist", "train-images-idx3-ubyte.gz"),
    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845": ("fashion_mnist", "train-labels-idx1-ubyte.gz"),
    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073": ("fashion_mnist", "t10k-images-idx3-ubyte.gz"),
    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5": ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"),
    # CIFAR-10 python version: the archive and its batches
    "c58f30108f718f92721af3b95e74349a": ("cifar10", "cifar-10-python.tar.gz"),
    "c99cafc152244af753f735de768cd75f": ("cifar10", "data_batch_1"),
    "d4bba439e000b95fd0a9bffe97cbabec": ("cifar10", "data_batch_2"),
    "54ebc095f3ab1f0389bbae665268c751": ("cifar10", "data_batch_3"),
    "634d18415352ddfa80567beed471001a": ("cifar10", "data_batch_4"),
    "482c414d41f54cd18b22e5b47cb7c3cb": ("cifar10", "data_batch_5"),
    "40351d587109b95175f43aff81a1287e": ("cifar10", "test_batch"),
    # CIFAR-100 python version
    "eb9058c3a382ffc7106e4002c42a8d85": ("cifar100", "cifar-100-python.tar.gz"),
    "16019d7e3df5f24257cddd939b257f8d": ("cifar100", "train"),
    "f0ef6b0ae62326f3e7ffdfab6717acfc": ("cifar100", "test"),
}
# Only files with these names are hashed (the official names; the idx files also without .gz).
OFFICIAL_NAMES = frozenset(n for _, n in KNOWN.values())

_CACHE_NAME = "file_digests.json"


def file_digests(path: Path) -> tuple[str, str]:
  """(MD5, SHA-256) hex digests of a file, read once."""
  md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      md5.update(block)
      sha.update(block)
  return md5.hexdigest(), sha.hexdigest()


def _cache_path() -> Path:
  return cache.cache_dir() / _CACHE_NAME


def _read_cache() -> dict:
  try:
    with open(_cache_path()) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def _write_cache(entries: dict) -> None:
  path = _cache_path()
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
      json.dump(entries, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # atomic: several processes may load data at once
  except OSError as err:  # a read-only home must not stop loading
    _log.warning("could not write %s (%s); file digests are recomputed next time", path, err)


def identify(path: Path, entries: Optional[dict] = None) -> Optional[tuple[str, str]]:
  """(dataset, official name) of a known official file, else None; digests cached by (path, size, mtime)."""
  own = entries is None
  entries = _read_cache() if own else entries
  key = cache.fingerprint([path])
  if key not in entries:
    entries[key] = list(file_digests(path))
    if own:
      _write_cache(entries)
  for digest in entries[key]:
    if digest in KNOWN:
      return KNOWN[digest]
  return None


def check_files(name: str, paths: Iterable[Path]) -> None:
  """Raises ValueError when a file with an official name is a known official file of another dataset."""
  paths = [Path(p) for p in paths if Path(p).name in OFFICIAL_NAMES or Path(p).name + ".gz" in OFFICIAL_NAMES]
  if not paths:
    return
  entries = _read_cache()
  before = len(entries)
  try:
    for path in paths:
      known = identify(path, entries)
      if known is not None and known[0] != name:
        raise ValueError(f"{path} is the official {known[0]} file {known[1]} (by its checksum), not a {name} file: "
                         f"point data_dir at the {name} files (or load_dataset({known[0]!r}, ...))")
  finally:
    if len(entries) != before:
      _write_cache(entries)
