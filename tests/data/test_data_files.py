"""Readers of the official formats, on tiny synthetic files written in those formats."""

import gzip
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from jaxrobust.data import DatasetNotFoundError, load_dataset
from jaxrobust.data import cache, files


def _write_idx(path, array, type_code=0x08):
  header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
  raw = header + array.astype(dtype).tobytes()
  if str(path).endswith(".gz"):
    with gzip.open(path, "wb") as f:
      f.write(raw)
  else:
    path.write_bytes(raw)


def _write_mnist(folder, n_train=7, n_test=3, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  out = {}
  for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y)
    out[split] = (x, y)
  return out


def _cifar_rows(n, rng):
  """Random NHWC images and their official (N, 3072) row-major CHW rows."""
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  return images, images.transpose(0, 3, 1, 2).reshape(n, 3072)


def test_read_idx_types_and_errors(tmp_path):
  x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
  for code in (0x08, 0x0B, 0x0D):
    path = tmp_path / f"a{code}.idx"
    _write_idx(path, x, code)
    out = files.read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype.isnative
    np.testing.assert_array_equal(out, x)
  _write_idx(tmp_path / "b.gz", x.astype(np.uint8))
  np.testing.assert_array_equal(files.read_idx(tmp_path / "b.gz"), x)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
  with pytest.raises(ValueError, match="not an idx file"):
    files.read_idx(tmp_path / "bad")
  (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"abc")
  with pytest.raises(ValueError, match="header says shape"):
    files.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_files_folder_or_parent(tmp_path, gz):
  written = _write_mnist(tmp_path / "fashion_mnist", gz=gz)
  for data_dir in (tmp_path / "fashion_mnist", tmp_path):  # the folder, or its parent
    for split in ("train", "test"):
      ds = load_dataset("fashion_mnist", split, data_dir=data_dir)
      x, y = written[split]
      assert ds.images.shape == (len(x), 28, 28, 1) and ds.images.dtype == np.uint8
      np.testing.assert_array_equal(ds.images[..., 0], x)
      np.testing.assert_array_equal(ds.labels, y)
      assert ds.name == "fashion_mnist" and ds.class_names[0] == "T-shirt/top"


def test_data_dir_env_var(tmp_path, monkeypatch):
  written = _write_mnist(tmp_path / "mnist")
  monkeypatch.setenv("JAXROBUST_DATA_DIR", str(tmp_path))
  monkeypatch.setenv("JAXROBUST_SHARED_DATA", str(tmp_path / "nowhere"))
  ds = load_dataset("mnist", "test", source="files")
  np.testing.assert_array_equal(ds.labels, written["test"][1])
  # The env var names PARENTS: files sitting directly in it are not taken for any dataset.
  monkeypatch.setenv("JAXROBUST_DATA_DIR", str(tmp_path / "mnist"))
  with pytest.raises(DatasetNotFoundError):
    load_dataset("fashion_mnist", "test", source="files")


def test_cifar10_pickles_folder_and_tarball(tmp_path):
  rng = np.random.default_rng(1)
  root = tmp_path / "c10" / "cifar-10-batches-py"
  root.mkdir(parents=True)
  expected = {"train": [], "test": []}
  members = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
  for member, split in members:
    images, rows = _cifar_rows(3, rng)
    labels = rng.integers(0, 10, 3).tolist()
    batch = {b"batch_label": member.encode(), b"labels": labels, b"data": rows,
             b"filenames": [b"x.png"] * 3}
    (root / member).write_bytes(pickle.dumps(batch, protocol=2))
    expected[split].append((images, labels))
  for split in ("train", "test"):
    x = np.concatenate([e[0] for e in expected[split]])
    y = np.concatenate([e[1] for e in expected[split]])
    for data_dir in (tmp_path / "c10", root):  # parent of the batches folder, or the folder
      ds = load_dataset("cifar10", split, data_dir=data_dir)
      np.testing.assert_array_equal(ds.images, x)
      np.testing.assert_array_equal(ds.labels, y)
  # The same files as the official tarball, read in place and cached.
  tar_dir = tmp_path / "tarred"
  tar_dir.mkdir()
  with tarfile.open(tar_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
    tar.add(root, arcname="cifar-10-batches-py")
  ds = load_dataset("cifar10", "test", data_dir=tar_dir)
  np.testing.assert_array_equal(ds.images, expected["test"][0][0])
  assert len(list(cache.cache_dir().glob("cifar10_pickletar_test_*.npz"))) == 1
  ds_again = load_dataset("cifar10", "test", data_dir=tar_dir)
  np.testing.assert_array_equal(ds_again.images, ds.images)


def test_cifar100_pickle_fine_and_coarse(tmp_path):
  rng = np.random.default_rng(2)
  root = tmp_path / "cifar-100-python"
  root.mkdir()
  data = {}
  for split in ("train", "test"):
    images, rows = _cifar_rows(4, rng)
    fine = [0, 1, 99, 54]
    coarse = [4, 1, 13, 2]  # the official superclasses of apple, aquarium_fish, worm, orchid
    (root / split).write_bytes(pickle.dumps(
        {b"data": rows, b"fine_labels": fine, b"coarse_labels": coarse}, protocol=2))
    data[split] = images
  ds = load_dataset("cifar100", "test", data_dir=tmp_path)
  assert ds.num_classes == 100 and ds.labels.tolist() == [0, 1, 99, 54]
  np.testing.assert_array_equal(ds.images, data["test"])
  coarse = load_dataset("cifar100", "test", data_dir=tmp_path, label_mode="coarse")
  assert coarse.num_classes == 20 and coarse.labels.tolist() == [4, 1, 13, 2]
  assert coarse.class_names[13] == "non-insect_invertebrates"
  with pytest.raises(ValueError, match="'fine' or 'coarse'"):
    load_dataset("cifar100", "test", data_dir=tmp_path, label_mode="super")


def test_cifar_binary_records(tmp_path):
  rng = np.random.default_rng(3)
  images, rows = _cifar_rows(5, rng)
  coarse, fine = rng.integers(0, 20, 5), rng.integers(0, 100, 5)
  raw100 = np.concatenate([coarse[:, None], fine[:, None], rows], 1).astype(np.uint8).tobytes()
  out = files.read_cifar_binary(raw100, cifar100=True)
  np.testing.assert_array_equal(out["images"], images)
  np.testing.assert_array_equal(out["labels"], fine)
  np.testing.assert_array_equal(out["coarse_labels"], coarse)
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  raw10 = np.concatenate([fine[:, None] % 10, rows], 1).astype(np.uint8).tobytes()
  (folder / "test_batch.bin").write_bytes(raw10)
  ds = load_dataset("cifar10", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(ds.images, images)
  np.testing.assert_array_equal(ds.labels, fine % 10)


def test_npz_layouts(tmp_path):
  rng = np.random.default_rng(4)
  x_train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)  # Keras layout: no channel axis
  y_train = rng.integers(0, 10, 6)
  folder = tmp_path / "mnist"
  folder.mkdir()
  np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train,
           x_test=x_train[:2], y_test=y_train[:2])
  ds = load_dataset("mnist", "train", data_dir=tmp_path)
  np.testing.assert_array_equal(ds.images[..., 0], x_train)
  np.testing.assert_array_equal(ds.labels, y_train)
  # images/labels per split; float images in [0, 1]; (N, 1) labels; NCHW is transposed.
  c_folder = tmp_path / "cifar100"
  c_folder.mkdir()
  x = rng.random((3, 3, 32, 32)).astype(np.float32)
  np.savez(c_folder / "test.npz", images=x, labels=np.array([[0], [3], [99]]))
  ds = load_dataset("cifar100", "test", data_dir=tmp_path)
  assert ds.images.dtype == np.float32 and ds.image_shape == (32, 32, 3)
  np.testing.assert_array_equal(ds.images, x.transpose(0, 2, 3, 1))
  coarse = load_dataset("cifar100", "test", data_dir=tmp_path, label_mode="coarse")
  assert coarse.labels.tolist() == [4, 8, 13]  # fine -> coarse table: apple, bear, worm
  np.savez(c_folder / "train.npz", pictures=x)
  with pytest.raises(ValueError, match="expected keys"):
    load_dataset("cifar100", "train", data_dir=tmp_path)
  np.savez(c_folder / "train.npz", images=np.zeros((2, 28, 28, 1), np.uint8), labels=[0, 1])
  with pytest.raises(ValueError, match=r"images should be \(N, 32, 32, 3\)"):
    load_dataset("cifar100", "train", data_dir=tmp_path)


def _write_png_strips(folder, split, per_class, rng):
  """A synthetic PNG-strip layout; returns the expected (images, labels)."""
  folder.mkdir(parents=True, exist_ok=True)
  lines = ["row\tlabel\tclass\toriginal_filename"]
  images, labels = [], []
  for label, n in enumerate(per_class):
    name = f"class{label}"
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    Image.fromarray(x.reshape(n * 32, 32, 3)).save(folder / f"{split}_{label}_{name}.png")
    lines += [f"{i}\t{label}\t{name}\t{name}_{i}.png" for i in range(n)]
    images.append(x)
    labels += [label] * n
  (folder / f"{split}_index.tsv").write_text("\n".join(lines) + "\n")
  return np.concatenate(images), np.array(labels)


def test_png_strips_and_cache_rebuild(tmp_path, caplog):
  rng = np.random.default_rng(5)
  folder = tmp_path / "cifar10"
  x, y = _write_png_strips(folder, "test", [2, 3, 1, 1, 1, 1, 1, 1, 1, 4], rng)
  ds = load_dataset("cifar10", "test", data_dir=folder)
  np.testing.assert_array_equal(ds.images, x)
  np.testing.assert_array_equal(ds.labels, y)
  entries = list(cache.cache_dir().glob("cifar10_pngstrips_test_*.npz"))
  assert len(entries) == 1
  # A truncated cache entry is rebuilt, not trusted.
  entries[0].write_bytes(entries[0].read_bytes()[:100])
  np.testing.assert_array_equal(load_dataset("cifar10", "test", data_dir=folder).images, x)
  assert "unreadable" in caplog.text
  # An entry with the wrong shape is rebuilt too.
  np.savez(entries[0], images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int32))
  np.testing.assert_array_equal(load_dataset("cifar10", "test", data_dir=folder).images, x)
  assert "unexpected shapes" in caplog.text
  # Index and strips must agree.
  (folder / "test_index.tsv").write_text("row\tlabel\tclass\toriginal_filename\n0\t0\tclass0\ta\n")
  with pytest.raises(ValueError):
    files.read_png_strips(folder, "test")


def test_svhn_mat(tmp_path):
  from scipy.io import savemat
  rng = np.random.default_rng(6)
  x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  savemat(tmp_path / "extra_32x32.mat", {"X": x.transpose(1, 2, 3, 0),
                                         "y": np.array([[10], [1], [9], [10]], np.uint8)})
  ds = load_dataset("svhn_cropped", "extra", data_dir=tmp_path)
  np.testing.assert_array_equal(ds.images, x)
  assert ds.labels.tolist() == [0, 1, 9, 0]  # 10 means digit 0, as in tfds
