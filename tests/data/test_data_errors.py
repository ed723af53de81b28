"""Error messages for missing data and bad arguments; the tfds path with a stand-in module."""

import types

import numpy as np
import pytest

from jaxrobust.data import DatasetNotFoundError, build_tfds_from_manual, load_dataset
from jaxrobust.data import tfds_source


@pytest.fixture
def no_default_data(tmp_path, monkeypatch):
  """Default search path and tfds both empty, and no home directory data."""
  monkeypatch.setenv("JAXROBUST_SHARED_DATA", str(tmp_path / "shared"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  return tmp_path


def test_missing_dataset_message(no_default_data):
  data_dir = no_default_data / "mine"
  with pytest.raises(DatasetNotFoundError) as info:
    load_dataset("mnist", "test", data_dir=data_dir)
  message = str(info.value)
  assert isinstance(info.value, FileNotFoundError)
  assert "'mnist'" in message and "'test'" in message
  assert str(data_dir) in message and str(data_dir / "mnist") in message
  assert "t10k-images-idx3-ubyte[.gz]" in message and "mnist.npz" in message
  for remedy in ("data_dir=", "JAXROBUST_DATA_DIR", "pip install tensorflow-cpu",
                 "load_dataset('digits')", "tensorflow_datasets"):
    assert remedy in message, remedy
  # Without data_dir: every default location is named.
  with pytest.raises(DatasetNotFoundError) as info:
    load_dataset("cifar100", "train", source="files")
  message = str(info.value)
  assert str(no_default_data / "shared" / "cifar100") in message
  assert str(no_default_data / "home" / ".jaxrobust" / "data" / "cifar100") in message
  assert "cifar-100-python.tar.gz" in message and "[cifar-100-python/]{train}" in message


def test_tfds_not_prepared_fails_fast(no_default_data):
  with pytest.raises(DatasetNotFoundError, match="not prepared"):
    load_dataset("mnist", "test", source="tfds", data_dir=no_default_data / "tfds")


def test_celeb_a_only_via_tfds(no_default_data):
  with pytest.raises(DatasetNotFoundError, match="celeb_a"):
    load_dataset("celeb_a", label_mode="attr:Gray_Hair")
  with pytest.raises(ValueError, match="attr:Gray_Hair"):
    load_dataset("celeb_a")
  with pytest.raises(ValueError, match="cannot be read from files"):
    load_dataset("celeb_a", source="files", label_mode="attr:Mustache")


def test_bad_arguments():
  with pytest.raises(ValueError, match="valid names: digits, mnist, fashion_mnist, cifar10"):
    load_dataset("imagenet")
  with pytest.raises(ValueError, match="unknown source"):
    load_dataset("digits", source="web")
  with pytest.raises(ValueError, match="splits"):
    load_dataset("mnist", "validation")
  with pytest.raises(ValueError, match="only 'digits' is shipped"):
    load_dataset("mnist", source="shipped")
  with pytest.raises(ValueError, match="takes no label_mode"):
    load_dataset("digits", label_mode="fine")


def test_build_tfds_from_manual_needs_tensorflow(monkeypatch, tmp_path):
  monkeypatch.setattr(tfds_source, "tensorflow_installed", lambda: False)
  with pytest.raises(ImportError, match="pip install tensorflow-cpu"):
    build_tfds_from_manual("mnist", str(tmp_path), str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match="mnist"):
    build_tfds_from_manual("cifar10", str(tmp_path))


class _FakeSource:
  """Random access like tfds.data_source's ArrayRecordDataSource."""

  def __init__(self, records):
    self.records = records

  def __len__(self):
    return len(self.records)

  def __getitems__(self, keys):
    return [self.records[k] for k in keys]


def test_tfds_data_source_path(monkeypatch):
  """With a prepared dataset, 'auto' falls back to tfds.data_source (no TensorFlow)."""
  rng = np.random.default_rng(0)
  records = [{"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": i % 100,
              "coarse_label": i % 20, "id": b"x"} for i in range(5)]
  calls = []

  class Builder:
    data_path = "/fake/cifar100/3.0.2"

    def is_prepared(self):
      return True

  fake = types.SimpleNamespace(
      __version__="fake", builder=lambda name, data_dir=None: Builder(),
      data_source=lambda name, split, data_dir, download: calls.append(
          (name, split, download)) or _FakeSource(records))
  monkeypatch.setattr(tfds_source, "_import_tfds", lambda: fake)
  monkeypatch.setenv("JAXROBUST_SHARED_DATA", "/nonexistent")
  ds = load_dataset("cifar100", "test", label_mode="coarse")
  assert calls == [("cifar100", "test", False)]
  assert ds.num_classes == 20 and ds.labels.tolist() == [0, 1, 2, 3, 4]
  np.testing.assert_array_equal(ds.images[3], records[3]["image"])
  celeb = [{"image": np.zeros((218, 178, 3), np.uint8),
            "attributes": {"Gray_Hair": bool(i % 2), "Mustache": False}} for i in range(4)]
  fake.data_source = lambda name, split, data_dir, download: _FakeSource(celeb)
  ds = load_dataset("celeb_a", "validation", label_mode="attr:Gray_Hair")
  assert ds.labels.tolist() == [0, 1, 0, 1] and ds.class_names == ("not_Gray_Hair", "Gray_Hair")
