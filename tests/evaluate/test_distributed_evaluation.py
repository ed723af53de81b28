"""Evaluation that does not depend on the batch size, the number of devices or the number of processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust.data import load_dataset
from jaxrobust.evaluate.robust import RobustEvaluator

DRIVER = Path(__file__).with_name("_evaluate_devices.py")
REPO = Path(__file__).resolve().parents[2]


def _apply(v, x):
  return x.reshape(x.shape[0], -1) @ v["w"] + v["b"]


@pytest.fixture(scope="module")
def linear_digits():
  """Softmax regression on the shipped digits, 100 Adam steps (undefended, ~95% clean)."""
  train = load_dataset("digits", "train")
  x, y = jnp.asarray(train.as_float()).reshape(len(train), -1), jnp.asarray(train.labels)
  v = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  opt = optax.adam(0.05)

  @jax.jit
  def step(v, st):
    g = jax.grad(lambda v: optax.softmax_cross_entropy_with_integer_labels(_apply(v, x), y).mean())(v)
    u, st = opt.update(g, st)
    return optax.apply_updates(v, u), st

  st = opt.init(v)
  for _ in range(100):
    v, st = step(v, st)
  return {k: np.asarray(a) for k, a in v.items()}, load_dataset("digits", "test").take(50)


def test_batch_size_changes_no_flag(linear_digits):
  """Random starts are drawn per point (its global id folded into the key), not per batch."""
  v, test = linear_digits
  specs = [{"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.03, "init": "uniform"},
           {"name": "apgd", "label": "apgd", "eps": 0.1, "n_iter": 3},
           {"name": "square", "label": "square", "eps": 0.1, "n_queries": 10}]
  ev = RobustEvaluator(_apply)
  reports = [ev.evaluate(v, test, specs, batch_size=b, progress=False, keep_adversarials=True) for b in (7, 16, 50)]
  for label in ("pgd", "apgd", "square"):
    flags = [r["robust_flags"][label] for r in reports]
    assert 0 < flags[0].sum() < len(test), (label, flags[0].sum())  # the flags can differ at all
    for f, r in zip(flags[1:], reports[1:]):
      np.testing.assert_array_equal(f, flags[0], err_msg=label)
      np.testing.assert_allclose(r["adversarials"][label], reports[0]["adversarials"][label], atol=1e-6)


def _env():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAXROBUST_XLA_FLAGS"] = "0"  # YNNPACK kernels: equal sums for any sharding
  env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
  return env


def _free_port() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return str(s.getsockname()[1])


def _run(tmp_path, weights, name, cascade, layouts):
  """Runs the driver once per (local devices, process count) layout at the same time; returns each layout's
  per-process outputs."""
  procs = []
  for local, nproc in layouts:
    prefix, port = str(tmp_path / f"{name}_{local}x{nproc}_"), _free_port()
    for i in range(nproc):
      hosts = [str(i), str(nproc), port] if nproc > 1 else []
      procs.append((prefix, i, subprocess.Popen([sys.executable, str(DRIVER), weights, prefix, cascade, str(local),
                                                 *hosts], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                env=_env())))
  for _, _, p in procs:
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
  return [[dict(np.load(f"{prefix}{i}.npz")) for prefix_, i, _ in procs if prefix_ == prefix]
          for prefix in dict.fromkeys(p[0] for p in procs)]


def _assert_same(reference: dict, other: dict):
  assert str(other["accuracies"]) == str(reference["accuracies"])
  for k in reference:
    if k.startswith("flags_") or k == "clean_flags":
      np.testing.assert_array_equal(other[k], reference[k], err_msg=k)
    elif k.startswith("adv_"):
      np.testing.assert_allclose(other[k], reference[k], atol=1e-6, err_msg=k)


@pytest.fixture()
def weights(linear_digits, tmp_path):
  path = str(tmp_path / "weights.npz")
  np.savez(path, **linear_digits[0])
  return path


def test_one_vs_eight_devices_same_flags_and_report(weights, tmp_path):
  """PGD and a one-stage AutoAttack cascade (APGD-CE) sharded over 8 simulated devices = 1 device."""
  one, eight = _run(tmp_path, weights, "quick", "quick", [(1, 1), (8, 1)])
  assert 0.0 < float(one[0]["clean_flags"].mean())
  _assert_same(one[0], eight[0])


@pytest.mark.slow
def test_full_autoattack_over_devices_and_processes(weights, tmp_path):
  """The whole AutoAttack cascade (few iterations) and PGD: 1 process x 1 device = 1 x 8 = 2 processes x 2
  devices through jax.distributed, and both processes hold the same global report."""
  one, eight, two_hosts = _run(tmp_path, weights, "full", "full", [(1, 1), (8, 1), (2, 2)])
  _assert_same(one[0], eight[0])
  assert len(two_hosts) == 2
  for host in two_hosts:
    _assert_same(one[0], host)


def test_evaluate_takes_the_distributed_flags_of_train():
  from jaxrobust import cli
  parser = cli.build_parser()
  flags = ["--coordinator", "node0:8476", "--num-processes", "2", "--process-id", "1"]
  train = parser.parse_args(["train", "--config", "quickstart_digits", *flags])
  evaluate = parser.parse_args(["evaluate", "--run-dir", "runs/x", *flags, "data.test_subset=5"])
  for args in (train, evaluate):
    assert (args.coordinator, args.num_processes, args.process_id, args.distributed_auto) == ("node0:8476", 2, 1,
                                                                                              False)
  assert evaluate.overrides == ["data.test_subset=5"]
  alone = parser.parse_args(["evaluate", "--run-dir", "runs/x", "--num-processes", "2"])
  with pytest.raises(SystemExit, match="--coordinator"):
    cli._init_distributed(alone)
