"""Runs the same few train steps on a 1-device and an 8-device mesh (8 simulated CPU devices).

usage: python _compare_devices.py METHOD MODEL STEPS; prints 'maxdiff <float>' and cache sizes.
MODEL 'name*M' trains an ensemble of M members of model name (model.members=M).
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust import parallel  # noqa: E402
from jaxrobust.configs import load_config  # noqa: E402
from jaxrobust.train.loop import Trainer  # noqa: E402

method, model, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert jax.device_count() == 8, jax.devices()
final = {}
for nd in (1, 8):
  name, _, members = model.partition("*")
  over = [f"method.name={method}", f"model.name={name}", "train.epochs=1", "data.train_subset=640",
          "train.batch_size=64", f"train.num_devices={nd}"] + ([f"model.members={members}"] if members else [])
  if method in ("pgd_at", "adr_adv", "ascl"):
    over += ["method.eps=0.2", "method.step_size=0.05", "method.steps=3"]
  cfg = load_config("quickstart_digits", over)
  cfg["output_dir"] = f"/tmp/jaxrobust_cmp_{os.getpid()}_{nd}"
  trainer = Trainer(cfg, progress=False)
  assert trainer.mesh.devices.size == nd
  state = trainer.fit(resume=False, max_steps=steps)
  final[nd] = jax.device_get(state)
  print(f"cache_size_{nd}", trainer.step_fn._cache_size())
diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                     if np.size(a) else 0.0, final[1], final[8])
print("maxdiff", max(jax.tree.leaves(diffs)))
rel = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                                      / (np.max(np.abs(np.asarray(a, np.float64))) + 1e-12))
                   if np.size(a) else 0.0, final[1], final[8])
print("maxreldiff", max(jax.tree.leaves(rel)))
print("steps", int(final[1].step), int(final[8].step))
