"""Faults in training and checkpoints: a non-finite loss stops the run at its step, corrupt checkpoint bytes are
caught by their checksums (and the previous good checkpoint is named or taken), an output folder of another run is
refused, and metrics.jsonl is cut back to the restored step."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.configs import load_config
from jaxrobust.train.checkpoint import (Checkpointer, CheckpointError, CorruptCheckpointError, array_checksums,
                                        restore_variables)
from jaxrobust.train.loop import NonFiniteLossError, Trainer, truncate_jsonl


def _tiny_cfg(tmp_path, **extra):
  over = ["train.epochs=1", "train.batch_size=64", "data.train_subset=320", "train.checkpoint_every_steps=2",
          "train.log_every_steps=5", "eval.attacks=[]"]
  over += [f"{k}={v}" for k, v in extra.items()]
  cfg = load_config("quickstart_digits", over)
  cfg["output_dir"] = str(tmp_path / "run")
  return cfg


def _data_files(step_dir):
  return [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True) if os.path.isfile(f)]


def _overwrite_bytes(step_dir, new: bytes, at: float = 0.5) -> None:
  """Overwrites 8 bytes at fraction ``at`` of the largest array-data file of a checkpoint."""
  _overwrite_file_bytes(max(_data_files(step_dir), key=os.path.getsize), new, at)


def _overwrite_file_bytes(f, new: bytes, at: float) -> None:
  raw = bytearray(open(f, "rb").read())
  i = int(len(raw) * at)
  raw[i:i + 8] = new
  open(f, "wb").write(bytes(raw))


def test_nan_learning_rate_stops_at_the_first_nan_step_before_its_checkpoint(tmp_path):
  cfg = _tiny_cfg(tmp_path, **{"optim.lr": "nan"})
  trainer = Trainer(cfg, progress=False)
  # step 1's loss is finite (its update makes the parameters NaN); step 2 is due for a checkpoint
  with pytest.raises(NonFiniteLossError, match=r"training step 2 \(epoch 0\) gave a non-finite .*loss") as e:
    trainer.fit()
  assert "newest checkpoint is none" in str(e.value)
  assert trainer.checkpointer.latest_step() is None  # the NaN state was never saved


@pytest.mark.slow
def test_nan_trades_beta_names_the_step_and_the_term(tmp_path):
  cfg = _tiny_cfg(tmp_path, **{"method.name": "trades", "method.beta": "nan", "method.eps": 0.1,
                               "method.step_size": 0.05, "method.steps": 1})
  assert np.isnan(cfg["method"]["beta"])  # 'nan' parses as the float
  with pytest.raises(NonFiniteLossError, match=r"training step 1 \(epoch 0\) gave a non-finite .*loss"):
    Trainer(cfg, progress=False).fit()


def test_corrupt_checkpoint_bytes_are_caught_and_the_previous_one_restored(tmp_path):
  cfg = _tiny_cfg(tmp_path)
  trainer = Trainer(cfg, progress=False)
  trainer.fit(max_steps=4)  # checkpoints at steps 2 and 4
  assert sorted(trainer.checkpointer._manager.all_steps()) == [2, 4]
  ckpts = trainer.checkpointer.directory
  _overwrite_bytes(os.path.join(ckpts, "4"), b"\xff" * 8)
  with pytest.raises(CorruptCheckpointError, match=r"checkpoints/4' is corrupt.*previous good checkpoint is step 2"):
    Trainer(cfg, progress=False).restore_or_init()
  # The evaluation path reads only params / batch_stats and checks their checksums: spread the damage over every
  # data file so it surely hits a parameter (orbax decides which file and offset each array lands in).
  for f in _data_files(os.path.join(ckpts, "4")):
    for k in range(1, 16):
      _overwrite_file_bytes(f, b"\xff" * 8, k / 16)
  with pytest.raises(CheckpointError, match="corrupt"):
    restore_variables(ckpts)
  with pytest.warns(UserWarning, match="resumed from the previous good checkpoint, step 2"):
    restored = Trainer(dict(cfg, train=dict(cfg["train"], on_corrupt_checkpoint="previous")),
                       progress=False).restore_or_init()
  assert int(restored.step) == 2 and os.path.isdir(os.path.join(ckpts, "corrupt-4"))


def test_zeroed_optimizer_state_bytes_are_caught(tmp_path):
  key = jax.random.PRNGKey(0)
  state = {"params": {"w": jax.random.normal(key, (64,))}, "opt_state": {"trace": jax.random.normal(key, (4096,))}}
  ck = Checkpointer(str(tmp_path / "ck"), every_steps=1)
  ck.save(1, state, {"step": 1})
  _overwrite_bytes(str(tmp_path / "ck" / "1"), b"\x00" * 8, at=0.6)
  with pytest.raises(CorruptCheckpointError, match=r"is corrupt: 1 saved array.*opt_state.*no earlier good checkpoint"):
    ck.restore(state)


def test_checksums_name_each_array_and_change_with_one_bit():
  a = {"w": np.arange(6, dtype=np.float32)}
  b = {"w": np.arange(6, dtype=np.float32)}
  b["w"].view(np.uint32)[3] ^= 1
  assert list(array_checksums(a)) == ["['w']"]
  assert array_checksums(a) != array_checksums(b)
  assert array_checksums(a) != array_checksums({"w": a["w"].astype(np.float64)})  # dtype is part of it


def test_output_dir_of_another_run_is_refused_unless_overwrite(tmp_path):
  cfg = _tiny_cfg(tmp_path)
  Trainer(cfg, progress=False)  # writes config.json
  (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
  other = _tiny_cfg(tmp_path, **{"optim.lr": 0.01})
  with pytest.raises(CheckpointError, match="holds another run.*--overwrite"):
    Trainer(other, progress=False)
  Trainer(dict(cfg, eval=dict(cfg["eval"], batch_size=10)), progress=False)  # same training config: a resume
  Trainer(other, progress=False, overwrite=True)
  assert json.loads((tmp_path / "run" / "config.json").read_text())["optim"]["lr"] == 0.01
  assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_metrics_are_cut_back_to_the_restored_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (5, 10, 15)) + '{"step": 2')
  truncate_jsonl(str(path), 10)
  assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [5, 10]
