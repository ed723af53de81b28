"""What every experiment script does to train one run: the library's Trainer on preloaded splits, timed."""

from __future__ import annotations

import json
import os
import time

import jax


def fit_run(cfg: dict, data) -> tuple:
  """Trains ``cfg`` (a validated config; ``data`` its loaded splits) from scratch with ``jaxrobust.train.loop.Trainer``.

  Returns (final state, wall seconds including compilation, the metrics.jsonl records)."""
  from jaxrobust.train.loop import Trainer
  t0 = time.perf_counter()
  trainer = Trainer(cfg, train_ds=data.train, test_ds=data.test, progress=False)
  state = trainer.fit(resume=False)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - t0
  trainer.checkpointer.close()
  with open(os.path.join(cfg["output_dir"], "metrics.jsonl")) as f:
    log = [json.loads(line) for line in f if line.strip()]
  return state, seconds, log
