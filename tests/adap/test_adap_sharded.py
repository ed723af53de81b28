"""AdAP under data parallelism: 1 vs 8 simulated devices give the same parameters and estimator tables."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

DRIVER = pathlib.Path(__file__).with_name("_compare_adap_devices.py")
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", ["adap_lpn"])
def test_one_vs_eight_devices_same_state_and_all_scatters_land(method):
  """Per-positive u updates made for different indices on different devices all land; a duplicated
  index written from two devices resolves to the same value on both meshes (last write wins); after
  a few steps params, optimiser state and u tables agree to float tolerance; one compilation each."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("XLA_FLAGS", None)
  r = subprocess.run([sys.executable, str(DRIVER), method, "4"], capture_output=True, text=True, env=env,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["steps"] == [4, 4]
  assert out["cache_size_1"] == 1 and out["cache_size_8"] == 1
  assert out["landed_1"] and out["landed_8"]
  assert out["u_nonzero"] > 32  # four batches of 32 positives (with repeats across batches)
  assert abs(out["dup_1"] - out["dup_8"]) < 1e-6
  assert abs(out["dup_8"] - out["dup_expected_row40"]) < 1e-6 < abs(out["dup_row0"] - out["dup_expected_row40"])
  assert out["maxdiff"] < 1e-4, out
  assert out["maxdiff_method_state"] < 1e-5, out
