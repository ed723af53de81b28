"""Standard plumbing: TensorBoard event files, the persistent compilation cache, the light install's
package data and the messages of its optional extras."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxrobust import compile_cache
from jaxrobust.event_file import EventFileWriter, crc32c, read_scalars


def test_event_file_roundtrip_and_framing(tmp_path):
  assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
  w = EventFileWriter(str(tmp_path / "tb"))
  w.scalars({"train/loss": 0.5, "eval/robust_acc/PGD-20 eps=0.2": 0.25}, step=3)
  w.scalars({"train/loss": float("nan")}, step=2**40)
  w.close()
  assert "tfevents" in os.path.basename(w.path)  # TensorBoard only reads files named so
  got = read_scalars(w.path)
  assert got[:2] == [(3, "train/loss", 0.5), (3, "eval/robust_acc/PGD-20 eps=0.2", 0.25)]
  assert got[2][0] == 2**40 and np.isnan(got[2][2])
  data = bytearray(open(w.path, "rb").read())
  data[-5] ^= 1
  open(w.path, "wb").write(bytes(data))
  with pytest.raises(ValueError, match="CRC mismatch"):
    read_scalars(w.path)


def test_tensorboard_itself_reads_the_event_file(tmp_path):
  event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
  w = EventFileWriter(str(tmp_path))
  for step in range(3):
    w.scalars({"train/loss": 1.0 / (step + 1)}, step=step)
  w.close()
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")] == [(0, 1.0), (1, 0.5), (2, 0.333333)]


def test_compile_cache_folder_from_argument_variable_or_default(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  assert compile_cache.compile_cache_dir() == os.path.expanduser("~/.cache/jaxrobust/xla")
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "c"))
  assert compile_cache.compile_cache_dir() == str(tmp_path / "c")
  assert compile_cache.compile_cache_dir(str(tmp_path / "d")) == str(tmp_path / "d")
  for off in ("off", "0", ""):
    monkeypatch.setenv(compile_cache.ENV, off)
    assert compile_cache.compile_cache_dir() is None and compile_cache.enable_compile_cache() is None
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(PermissionError, match="JAXROBUST_COMPILE_CACHE=DIR"):
    compile_cache.enable_compile_cache(str(blocker / "sub"))


def test_compile_cache_stores_even_a_tiny_program(tmp_path):
  # a fresh process: the cache is process-global configuration
  code = textwrap.dedent(f"""
      import jax, jax.numpy as jnp
      from jaxrobust.compile_cache import enable_compile_cache
      enable_compile_cache({str(tmp_path)!r})
      jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()
  """)
  subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
  assert any(os.scandir(tmp_path)), "no cache entry written"


def test_shipped_digits_are_byte_equal_to_scikit_learn():
  datasets = pytest.importorskip("sklearn.datasets")
  from jaxrobust.data.shipped import digits_raw
  raw, target = digits_raw()
  bunch = datasets.load_digits()
  assert raw.shape == (1797, 8, 8) and raw.dtype == np.uint8
  np.testing.assert_array_equal(raw.astype(np.float64), bunch.images)
  np.testing.assert_array_equal(target, bunch.target)


def test_optional_extras_name_their_install(monkeypatch, tmp_path):
  from jaxrobust.data.files import read_svhn_mat
  from jaxrobust.quickstart import plot_curves
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "scipy.io", None)
  with pytest.raises(ImportError, match=r"pip install 'jaxrobust\[plot\]'"):
    plot_curves({"m": {"eps": [0.0], "robust_acc": [1.0]}}, str(tmp_path / "p.png"))
  with pytest.raises(ImportError, match=r"pip install 'jaxrobust\[svhn\]'"):
    read_svhn_mat(tmp_path / "train_32x32.mat")


def test_tensorboard_key_is_declared_and_checked():
  from jaxrobust.configs import KEYS, load_config
  from jaxrobust.configs.base import validate_config
  assert "train.tensorboard" in KEYS
  cfg = load_config("quickstart_digits", ["train.tensorboard=true"])
  assert cfg["train"]["tensorboard"] in (True, "true")
  cfg["train"]["tensorboard"] = "yes"
  with pytest.raises(ValueError, match="train.tensorboard must be true or false"):
    validate_config(cfg)


class _Step:
  """A dispatched step's metric as far as the bar asks: finished or not."""

  def __init__(self, ready):
    self.ready = ready

  def is_ready(self):
    return self.ready


def test_training_bar_counts_finished_steps_in_order_without_waiting():
  import collections

  import jax.numpy as jnp
  from jaxrobust.train.loop import _pop_finished
  inflight = collections.deque({"loss": _Step(r)} for r in (True, True, False, True))
  assert _pop_finished(inflight) == 2 and len(inflight) == 2  # the unfinished third step ends the count
  inflight[0]["loss"].ready = True
  assert _pop_finished(inflight) == 2 and not inflight
  assert _pop_finished(collections.deque([{"loss": jnp.ones(())}])) == 1  # a real jax.Array
