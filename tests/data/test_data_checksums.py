"""Official-file checksums: a folder of one dataset is not read as another, the digests are computed once per
file, the published MD5 / SHA-256 agree with the shared copies, and a truncated file names itself."""

import shutil

import pytest

from jaxrobust.data import checksums, load_dataset

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_shared_files_match_both_published_digests(shared_data, name):
  for f in FILES:
    md5, sha = checksums.file_digests(shared_data / name / f)
    assert checksums.KNOWN[md5] == checksums.KNOWN[sha] == (name, f)


def test_fashion_mnist_folder_is_refused_as_mnist_and_digests_are_cached(shared_data, monkeypatch):
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz is the official fashion_mnist file .*not a mnist file"):
    load_dataset("mnist", "test", data_dir=shared_data / "fashion_mnist")
  calls = []
  real = checksums.file_digests
  monkeypatch.setattr(checksums, "file_digests", lambda p: calls.append(p) or real(p))
  for _ in range(2):
    assert len(load_dataset("mnist", "test", data_dir=shared_data / "mnist")) == 10000
  assert len(calls) <= 2  # at most the first load hashes the two files; the second reads the cache


def test_truncated_file_names_itself(shared_data, tmp_path):
  for f in FILES[2:]:
    shutil.copy(shared_data / "mnist" / f, tmp_path / f)
  images = tmp_path / FILES[2]
  images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*truncated or corrupt \(EOFError"):
    load_dataset("mnist", "test", data_dir=tmp_path)
