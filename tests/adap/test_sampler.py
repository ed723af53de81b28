"""Binary tasks, the 80/20 per-class split and the positive-balanced sampler (AdAP reference
``utils/imbalanced_cifar.py`` and ``losses.py::DataSampler``), and how training picks its sampler."""

import dataclasses

import numpy as np
import pytest

from jaxrobust.data.binary import one_vs_all, split_per_class
from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.data.pipeline import batch_iterator
from jaxrobust.data.positive_balanced import positive_balanced_iterator, positive_balanced_rows
from jaxrobust.data.splits import load_binary_splits
from jaxrobust.methods.registry import get_method
from jaxrobust.train.batches import training_batches


def make_batches(ds, cfg, epoch, skip=0):
  """What ``Trainer.batches`` yields for a config (the method defaults to standard training)."""
  method = get_method(cfg.get("method", {}).get("name", "standard"))
  return training_batches(ds, method, cfg["data"], seed=cfg["seed"], batch_size=cfg["train"]["batch_size"],
                          epoch=epoch, skip=skip)


def _ds(n=1000, k=10, seed=0):
  rng = np.random.default_rng(seed)
  return ArrayDataset(images=rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8),
                      labels=rng.integers(0, k, n).astype(np.int32), num_classes=k, name="toy",
                      class_names=tuple(f"c{i}" for i in range(k)))


def test_one_vs_all_and_per_class_split():
  ds = _ds()
  b = one_vs_all(ds, 3)
  assert b.num_classes == 2 and b.class_names == ("not_c3", "c3")
  np.testing.assert_array_equal(b.labels, (ds.labels == 3).astype(np.int32))
  np.testing.assert_array_equal(one_vs_all(ds, [1, 2]).labels, np.isin(ds.labels, [1, 2]))
  with pytest.raises(ValueError, match="binary_positive_class"):
    one_vs_all(ds, 10)
  tr, va = split_per_class(ds.labels, 0.8, seed=3)
  assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(ds)
  for c in range(10):
    n_c = int(np.sum(ds.labels == c))
    assert np.sum(ds.labels[tr] == c) == int(n_c * 0.8)
  # the reference's np.random.seed(seed); shuffle(idx) per class
  idx0 = np.flatnonzero(ds.labels == 0)
  np.random.seed(3)
  np.random.shuffle(idx0)
  np.testing.assert_array_equal(tr[:int(len(idx0) * 0.8)], idx0[:int(len(idx0) * 0.8)])
  np.testing.assert_array_equal(split_per_class(ds.labels, 0.8, seed=3)[0], tr)


def test_load_binary_splits_with_a_fake_loader():
  full = {"train": _ds(600, seed=1), "test": _ds(200, seed=2)}
  loader = lambda name, split, **kw: full[split]
  sp = load_binary_splits({"name": "cifar10", "binary_task": "ova", "binary_positive_class": 4,
                           "val_fraction": 0.2, "split_seed": 0}, loader=loader)
  assert len(sp.train) + len(sp.val) == 600 and len(sp.test) == 200
  rate = lambda d: d.labels.mean()
  assert abs(rate(sp.train) - rate(sp.val)) < 0.02  # stratified
  with pytest.raises(ValueError, match="binary_positive_class"):
    load_binary_splits({"name": "cifar10", "binary_task": "ova"}, loader=loader)
  with pytest.raises(ValueError, match="binary_task"):
    load_binary_splits({"name": "cifar10", "binary_task": "xyz"}, loader=loader)
  with pytest.raises(ValueError, match="cifar100"):
    load_binary_splits({"name": "cifar10", "binary_task": "coarse", "binary_positive_class": 0}, loader=loader)


def _labels(n=1000, n_pos=90, seed=0):
  y = np.zeros(n, np.int32)
  y[np.random.default_rng(seed).choice(n, n_pos, replace=False)] = 1
  return y


def test_positives_first_exact_counts_and_no_repeat_within_a_pass():
  y = _labels()
  rows = positive_balanced_rows(y, 64, seed=0, epoch=0)
  assert rows.shape == (1000 // 64, 64)
  assert np.all(y[rows[:, :32]] == 1) and np.all(y[rows[:, 32:]] == 0)
  pos_stream = np.concatenate([positive_balanced_rows(y, 64, seed=0, epoch=e)[:, :32].ravel() for e in range(3)])
  n_pos = 90
  for k in range(len(pos_stream) // n_pos):  # each pass over the positive list is a permutation
    assert len(set(pos_stream[k * n_pos:(k + 1) * n_pos])) == n_pos
  assert len(set(pos_stream[:n_pos])) == n_pos
  # a wrap inside a batch can repeat a positive (tail of one shuffle + head of the next): with 3 positives
  # and 4 slots every batch repeats one; the estimators resolve it last-write-wins
  few = positive_balanced_rows(_labels(100, 3), 8, seed=0, epoch=0, pos_num=4)
  assert all(len(set(r[:4])) < 4 for r in few)


def test_sampler_is_a_function_of_seed_and_epoch_and_resumes():
  y = _labels()
  a = positive_balanced_rows(y, 64, seed=5, epoch=2)
  np.testing.assert_array_equal(a, positive_balanced_rows(y, 64, seed=5, epoch=2))
  assert not np.array_equal(a, positive_balanced_rows(y, 64, seed=5, epoch=3))
  assert not np.array_equal(a, positive_balanced_rows(y, 64, seed=6, epoch=2))
  np.testing.assert_array_equal(positive_balanced_rows(y, 64, seed=5, epoch=2, first=4), a[4:])
  # the epoch continues the previous epoch's stream (pointer carried over, as the reference's sampler)
  s0 = positive_balanced_rows(y, 64, seed=5, epoch=0, pos_num=16)[:, :16].ravel()
  s1 = positive_balanced_rows(y, 64, seed=5, epoch=1, pos_num=16)[:, :16].ravel()
  stream = np.r_[s0, s1]
  assert len(set(stream[90:180])) == 90
  assert positive_balanced_rows(y, 64, seed=0, epoch=0, pos_num=16).shape == (15, 64)


def test_iterator_batches_sharding_and_make_batches():
  ds = one_vs_all(_ds(700, seed=3), 2)
  cfg = {"seed": 1, "train": {"batch_size": 32}, "data": {"sampler": "positive_balanced"}}
  batches = list(make_batches(ds, cfg, epoch=1))
  assert len(batches) == 700 // 32
  b = batches[0]
  assert b["image"].dtype == np.float32 and b["image"].shape == (32, 4, 4, 1)
  assert b["label"].dtype == np.int32 and b["index"].dtype == np.int32
  np.testing.assert_array_equal(b["label"], np.r_[np.ones(16), np.zeros(16)])
  np.testing.assert_array_equal(ds.labels[b["index"]], b["label"])
  np.testing.assert_allclose(b["image"], ds.as_float(b["index"]))
  resumed = list(make_batches(ds, cfg, epoch=1, skip=5))
  assert len(resumed) == len(batches) - 5
  np.testing.assert_array_equal(resumed[0]["index"], batches[5]["index"])
  shards = [list(positive_balanced_iterator(ds, 32, seed=1, epoch=1, process_index=i, process_count=4))
            for i in range(4)]
  np.testing.assert_array_equal(np.concatenate([s[3]["index"] for s in shards]), batches[3]["index"])
  # the default sampler is the shuffled batch_iterator
  plain = list(make_batches(ds, {"seed": 1, "train": {"batch_size": 32}, "data": {}}, epoch=0, skip=2))
  ref = list(batch_iterator(ds, 32, seed=1, epoch=0))[2:]
  np.testing.assert_array_equal(plain[0]["index"], ref[0]["index"])
  auto = {"seed": 1, "train": {"batch_size": 32}, "data": {"sampler": "auto"}, "method": {"name": "adap_ln"}}
  np.testing.assert_array_equal(next(iter(make_batches(ds, auto, epoch=1)))["index"], batches[0]["index"])
  auto["method"]["name"] = "trades_binary"
  np.testing.assert_array_equal(next(iter(make_batches(ds, auto, epoch=0, skip=2)))["index"], ref[0]["index"])
  with pytest.raises(ValueError, match="sampler"):
    list(make_batches(ds, {"seed": 1, "train": {"batch_size": 32}, "data": {"sampler": "nope"}}, epoch=0))
  with pytest.raises(ValueError, match="positives and negatives"):
    positive_balanced_rows(np.zeros(100, np.int32), 32, seed=0, epoch=0)


def test_methods_declare_their_batches_and_pos_num_overrides_the_default():
  for name in ("adap_mm", "adap_pz", "adap_lz", "adap_ln", "adap_lpn", "ap_max"):
    assert get_method(name).batches == "positive_balanced"
  for name in ("bce", "pgd_bce", "trades_binary", "mart_binary", "standard", "trades"):
    assert get_method(name).batches == "shuffle"
  with pytest.raises(ValueError, match="batches"):
    dataclasses.replace(get_method("standard"), batches="balanced")
  ds = one_vs_all(_ds(700, seed=3), 2)
  cfg = {"seed": 1, "train": {"batch_size": 32}, "data": {"sampler": "auto", "pos_num": 8},
         "method": {"name": "ap_max"}}
  first = next(iter(make_batches(ds, cfg, epoch=0)))
  np.testing.assert_array_equal(first["label"], np.r_[np.ones(8), np.zeros(24)])


def test_positive_balanced_sampler_refuses_multiclass_labels():
  from jaxrobust.data.positive_balanced import positive_balanced_rows
  with pytest.raises(ValueError, match="needs binary labels in"):
    positive_balanced_rows(np.arange(40) % 10, 8, seed=0, epoch=0)
