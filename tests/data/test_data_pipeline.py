"""batch_iterator (order, coverage, padding, process sharding) and random_crop_flip."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.data import (ArrayDataset, batch_iterator, num_batches, random_crop_flip,
                            steps_per_epoch)


def _dataset(n=103):
  images = (np.arange(n)[:, None, None, None] % 256 * np.ones((1, 2, 2, 1))).astype(np.uint8)
  return ArrayDataset(images=images, labels=np.arange(n) % 10, num_classes=10, name="toy")


def _indices(batches):
  return [b["index"].tolist() for b in batches]


def test_num_batches():
  assert num_batches(103, 10) == 10 and num_batches(103, 10, drop_remainder=False) == 11
  assert num_batches(100, 10, drop_remainder=False) == 10
  assert steps_per_epoch(_dataset(), 10) == 10 and steps_per_epoch(50, 8, False) == 7


def test_deterministic_order_and_contents():
  ds = _dataset()
  first = list(batch_iterator(ds, 10, seed=3, epoch=0, process_index=0, process_count=1))
  again = list(batch_iterator(ds, 10, seed=3, epoch=0, process_index=0, process_count=1))
  other_epoch = list(batch_iterator(ds, 10, seed=3, epoch=1, process_index=0, process_count=1))
  other_seed = list(batch_iterator(ds, 10, seed=4, epoch=0, process_index=0, process_count=1))
  assert _indices(first) == _indices(again)
  assert _indices(first) != _indices(other_epoch) and _indices(first) != _indices(other_seed)
  assert len(first) == 10  # drop_remainder by default
  expected = np.random.default_rng((3, 0)).permutation(103)[:100]
  np.testing.assert_array_equal(np.concatenate(_indices(first)), expected)
  batch = first[0]
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (10, 2, 2, 1)
  assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
  assert batch["mask"].dtype == np.float32 and np.all(batch["mask"] == 1)
  np.testing.assert_array_equal(batch["label"], ds.labels[batch["index"]])
  np.testing.assert_array_equal(batch["image"], ds.as_float(batch["index"]))
  unshuffled = list(batch_iterator(ds, 10, seed=0, shuffle=False, process_index=0,
                                   process_count=1))
  assert unshuffled[1]["index"].tolist() == list(range(10, 20))


def test_every_index_once_and_padding():
  ds = _dataset()
  batches = list(batch_iterator(ds, 10, seed=0, drop_remainder=False, process_index=0,
                                process_count=1))
  assert [len(b["index"]) for b in batches] == [10] * 10 + [3]
  assert sorted(np.concatenate(_indices(batches)).tolist()) == list(range(103))
  padded = list(batch_iterator(ds, 10, seed=0, pad_last=True, process_index=0, process_count=1))
  assert len(padded) == 11 and all(len(b["index"]) == 10 for b in padded)
  last = padded[-1]
  np.testing.assert_array_equal(last["mask"], [1] * 3 + [0] * 7)
  np.testing.assert_array_equal(last["index"][:3], batches[-1]["index"])
  assert np.all((last["index"] >= 0) & (last["index"] < 103))  # padding stays a valid row
  real = np.concatenate([b["index"][b["mask"] == 1] for b in padded])
  assert sorted(real.tolist()) == list(range(103))


@pytest.mark.parametrize("kwargs", [dict(), dict(pad_last=True), dict(shuffle=False)])
def test_process_shards_partition_the_global_batch(kwargs):
  ds = _dataset()
  single = list(batch_iterator(ds, 12, seed=7, epoch=2, process_index=0, process_count=1,
                               **kwargs))
  shards = [list(batch_iterator(ds, 12, seed=7, epoch=2, process_index=p, process_count=4,
                                **kwargs)) for p in range(4)]
  assert all(len(s) == len(single) for s in shards)
  for k, batch in enumerate(single):
    for key in ("image", "label", "index", "mask"):
      assert all(shards[p][k][key].shape[0] == 3 for p in range(4))
      np.testing.assert_array_equal(np.concatenate([shards[p][k][key] for p in range(4)]),
                                    batch[key])


def test_bad_batching_arguments():
  ds = _dataset()
  with pytest.raises(ValueError, match="multiple of process_count"):
    batch_iterator(ds, 10, seed=0, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="split evenly"):
    batch_iterator(ds, 12, seed=0, drop_remainder=False, process_index=0, process_count=4)
  with pytest.raises(ValueError, match="process_index"):
    batch_iterator(ds, 12, seed=0, process_index=4, process_count=4)
  # Defaults come from jax (one process here).
  assert len(list(batch_iterator(ds, 10, seed=0))) == 10


def test_random_crop_flip():
  key = jax.random.PRNGKey(0)
  images = jax.random.uniform(jax.random.PRNGKey(1), (16, 8, 8, 3)) + 0.01  # no exact zeros
  augment = jax.jit(random_crop_flip, static_argnames=("pad", "flip"))
  out = augment(key, images, pad=2)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_array_equal(out, augment(key, images, pad=2))
  assert not np.array_equal(out, augment(jax.random.PRNGKey(2), images, pad=2))
  assert np.array_equal(random_crop_flip(key, images, pad=0, flip=False), images)
  # Each output is a window of the zero-padded (possibly flipped) input.
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  out = np.asarray(out)
  offsets, flips = set(), 0
  for i in range(len(images)):
    matches = [(dy, dx, f) for f in (False, True) for dy in range(5) for dx in range(5)
               if np.array_equal(out[i], (padded[i, :, ::-1] if f else padded[i])[dy:dy + 8,
                                                                               dx:dx + 8])]
    assert matches, f"example {i} is not a translation of its padded image"
    offsets.add(matches[0][:2])
    flips += matches[0][2]
  assert len(offsets) > 3 and 0 < flips < 16  # per-example randomness
  # flip=False gives pure translations; identical inputs still get different crops.
  same = jnp.broadcast_to(images[:1], images.shape)
  crops = np.asarray(augment(key, same, pad=2, flip=False))
  assert len({c.tobytes() for c in crops}) > 3
  unflipped = [any(np.array_equal(crops[i], padded[0, dy:dy + 8, dx:dx + 8])
                   for dy in range(5) for dx in range(5)) for i in range(16)]
  assert all(unflipped)
