"""The training batches of one epoch: the sampler the method declares, or the one ``data.sampler`` names.

    for batch in training_batches(train_ds, method, cfg['data'], seed=0, batch_size=128, epoch=e, skip=k):
      ...   # {'image', 'label', 'index', 'mask'}, this process's rows of one global batch

``data.sampler``:

* 'shuffle' (also when unset): ``batch_iterator``, every example once per epoch in a seeded random
  order, the remainder dropped; what the baselines' shuffled data loaders do.
* 'positive_balanced': ``positive_balanced_iterator``, ``data.pos_num`` positives first in every
  batch (default ``int(batch_size * method.positive_fraction)``), then negatives; the sampler of the
  AdAP reference code (Li, Tong, Yang 2023), which AP maximisation needs.
* 'auto': what the method declares in ``Method.batches``.

Either way the batches of an epoch are a function of (seed, epoch) only, and ``skip`` starts at the
first batch not yet consumed, which is what exact resume needs.
"""

from __future__ import annotations

from typing import Iterator

from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.data.pipeline import batch_iterator
from jaxrobust.data.positive_balanced import positive_balanced_iterator
from jaxrobust.methods.base import BATCHES, Method

SAMPLERS = BATCHES + ("auto",)


def sampler_for(method: Method, data: dict) -> str:
  """'shuffle' or 'positive_balanced': ``data.sampler``, with 'auto' resolved by ``method.batches``."""
  sampler = data.get("sampler") or "shuffle"
  if sampler == "auto":
    sampler = method.batches
  if sampler not in BATCHES:
    raise ValueError(f"unknown data.sampler {sampler!r}; choose one of {SAMPLERS}")
  return sampler


def training_batches(train_ds: ArrayDataset, method: Method, data: dict, *, seed: int, batch_size: int,
                     epoch: int, skip: int = 0) -> Iterator[dict]:
  """The training batches of ``epoch`` from the ``skip``-th on (see the module docstring).

  method: the Method being trained ('auto' reads its ``batches``, the pos_num default its
    ``positive_fraction``).
  data: the config's ``data`` section (sampler, pos_num).
  """
  sampler = sampler_for(method, data)
  if sampler == "positive_balanced":
    pos_num = data.get("pos_num")
    if pos_num is None:
      pos_num = int(batch_size * method.positive_fraction)
    yield from positive_balanced_iterator(train_ds, batch_size, seed=seed, epoch=epoch, pos_num=pos_num, skip=skip)
    return
  it = batch_iterator(train_ds, batch_size, seed=seed, epoch=epoch, shuffle=True, drop_remainder=True)
  for i, batch in enumerate(it):
    if i >= skip:
      yield batch


__all__ = ["SAMPLERS", "sampler_for", "training_batches"]
