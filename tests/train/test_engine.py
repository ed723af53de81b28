"""Engine properties: one compilation, 1-vs-8 devices, SIGKILL + resume, checkpoint errors."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrobust.configs import load_config
from jaxrobust.train.checkpoint import CheckpointError
from jaxrobust.train.loop import Trainer

DRIVER = pathlib.Path(__file__).with_name("_driver.py")


def _run_driver(out_dir, num_devices=1, kill_at=-1, method="pgd_at", model="small_cnn"):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, str(DRIVER), str(out_dir), str(num_devices), str(kill_at), method, model],
                        capture_output=True, text=True, env=env, timeout=600)


def _params(out_dir):
  with np.load(os.path.join(out_dir, "final_params.npz")) as f:
    return {k: f[k] for k in f.files}


def _tiny_cfg(tmp_path, **extra):
  over = ["train.epochs=3", "train.batch_size=64", "data.train_subset=320", "train.checkpoint_every_steps=1000"]
  over += [f"{k}={v}" for k, v in extra.items()]
  cfg = load_config("quickstart_digits", over)
  cfg["output_dir"] = str(tmp_path / "run")
  return cfg


def test_train_step_compiles_once_across_steps_and_epochs(tmp_path):
  cfg = _tiny_cfg(tmp_path, **{"method.name": "pgd_at", "method.eps": 0.1, "method.step_size": 0.05,
                               "method.steps": 2})
  trainer = Trainer(cfg, progress=False)
  state = trainer.fit()
  assert int(state.step) == 3 * (320 // 64)  # three epochs ran
  assert trainer.step_fn._cache_size() == 1
  # A second fit call with a fresh state (new buffers, same shapes) must not recompile either.
  trainer.fit(state=trainer.init_state(), max_steps=2)
  assert trainer.step_fn._cache_size() == 1


def test_training_reduces_loss_and_writes_metrics(tmp_path):
  cfg = _tiny_cfg(tmp_path, **{"train.log_every_steps": 5})
  trainer = Trainer(cfg, progress=False)
  trainer.fit()
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().strip().splitlines()
  import json
  recs = [json.loads(l) for l in lines]
  assert recs[-1]["step"] == 15 and recs[0]["loss"] > recs[-1]["loss"]
  assert {"loss", "acc", "lr", "examples_per_s", "grad_norm"} <= set(recs[-1])


# XLA's YNNPACK kernels sum in the same order whatever the per-device batch, so with them
# (JAXROBUST_XLA_FLAGS=0) the two meshes agree to ~1e-7 over several steps. jaxrobust's default
# Eigen convolutions block by the per-device batch: ~5e-6 relative after one step, which a few
# steps of training amplify past any tight tolerance; they get a one-step relative check.
# The default run keeps one BN case, one attack case and one latent-method case; the rest are slow-marked
# (each is a pair of 20-30 s subprocesses on 2 cores).
SLOW = pytest.mark.slow


@pytest.mark.parametrize("method,model,steps,xla_default", [
    ("standard", "resnet20", 3, False), ("pgd_at", "small_cnn", 2, False),
    pytest.param("standard", "resnet20", 1, True, marks=SLOW),
    # ADR's pairs and ASCL's contrastive pool span the global batch (jit's semantics), not a shard.
    # (The TRADES-KL adversaries start where the KL gradient is float noise, so their sign steps
    # differ across meshes; ADR-ADV checks the ADR terms without that amplifier. ASCL's masks come from
    # argmax predictions, so a second step can flip a near-tie: one step, 5e-8 apart.)
    ("adr_adv", "small_cnn", 2, False), pytest.param("ascl", "small_cnn", 1, False, marks=SLOW),
    # An ensemble (model.members=M): the stacked member axis is replicated, the batch sharded. (A BN ensemble's
    # 1-vs-8 train-mode forward, statistics and gradients: tests/models/test_ensemble.py.)
    pytest.param("pgd_at", "small_cnn*2", 2, False, marks=SLOW),
    pytest.param("trades", "resnet20", 1, False, marks=pytest.mark.slow)])  # ~60 s; out of the default run
def test_one_vs_eight_devices_same_parameters(method, model, steps, xla_default):
  """Same steps on a 1-device and an 8-device mesh: same params, BN statistics, opt state, keys.

  resnet20 has batch norm, so GSPMD must compute global-batch statistics to agree (per-shard
  statistics would differ by tens of percent). Only a few steps: float reduction order differs
  across meshes and the attacks' sign() flips near-zero gradient components, which amplifies the
  difference over later steps.
  """
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAXROBUST_XLA_FLAGS"] = "1" if xla_default else "0"
  r = subprocess.run([sys.executable, str(DRIVER.with_name("_compare_devices.py")), method, model, str(steps)],
                     capture_output=True, text=True, env=env, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
  assert out["steps"] == f"{steps} {steps}"
  assert out["cache_size_1"] == "1" and out["cache_size_8"] == "1"
  if xla_default:
    assert float(out["maxreldiff"]) < 1e-4, r.stdout
  else:
    assert float(out["maxdiff"]) < 1e-4, r.stdout


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
  ref = _run_driver(tmp_path / "ref")
  assert ref.returncode == 0, ref.stderr[-3000:]
  killed = _run_driver(tmp_path / "crash", kill_at=23)  # checkpoints at 10 and 20; killed at 23
  assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
  assert not (tmp_path / "crash" / "final_params.npz").exists()
  resumed = _run_driver(tmp_path / "crash")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  a, b = _params(tmp_path / "ref"), _params(tmp_path / "crash")
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
  cfg = _tiny_cfg(tmp_path)
  trainer = Trainer(cfg, progress=False)
  trainer.fit(max_steps=2)
  ckpt = pathlib.Path(trainer.checkpointer.directory) / "2"
  assert ckpt.exists()
  for f in ckpt.rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "state" in str(f):
      f.write_bytes(b"garbage")
  with pytest.raises(CheckpointError, match="corrupt|unreadable|could not be restored"):
    Trainer(cfg, progress=False).restore_or_init()


def test_mismatched_checkpoint_gives_clear_error(tmp_path):
  cfg = _tiny_cfg(tmp_path)
  Trainer(cfg, progress=False).fit(max_steps=2)
  other = _tiny_cfg(tmp_path, **{"model.name": "mlp"})
  with pytest.raises(CheckpointError, match="does not match|different config"):
    Trainer(other, progress=False).restore_or_init()
  # The refused config did not overwrite the run's record.
  import json
  assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"] == cfg["model"]["name"]


def test_older_run_without_subset_seed_still_resumes(tmp_path):
  # data.subset_seed was added after runs existed; unset, it must not change the config fingerprint.
  from jaxrobust.train.loop import _fingerprint
  cfg = _tiny_cfg(tmp_path)
  old = {**cfg, "data": {k: v for k, v in cfg["data"].items() if k != "subset_seed"}}
  assert cfg["data"]["subset_seed"] is None and _fingerprint(old) == _fingerprint(cfg)
  assert _fingerprint({**cfg, "data": dict(cfg["data"], subset_seed=0)}) != _fingerprint(cfg)


def test_unwritable_output_dir(tmp_path):
  cfg = _tiny_cfg(tmp_path)
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  cfg["output_dir"] = str(blocker / "run")  # works as root too, unlike chmod
  with pytest.raises(PermissionError, match="output directory"):
    Trainer(cfg, progress=False)


def test_two_process_multihost_run_matches_single_process(tmp_path):
  """jax.distributed with 2 CPU processes x 2 devices vs 1 process x 4 devices: same parameters."""
  import socket
  script = str(DRIVER.with_name("_multihost.py"))
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAXROBUST_XLA_FLAGS"] = "0"  # YNNPACK kernels: equal sums for any sharding (see above)
  ref = subprocess.run([sys.executable, script, str(tmp_path / "single"), "0", "1", "0", "4"],
                       capture_output=True, text=True, env=env, timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
  procs = [subprocess.Popen([sys.executable, script, str(tmp_path / "multi"), str(i), "2", port, "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in (0, 1)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "done" in out and out.strip().endswith(" 3")
  a, b = _params(tmp_path / "single"), _params(tmp_path / "multi")
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
