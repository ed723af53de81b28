"""AdAP on a 1-device and an 8-device mesh (8 simulated CPU devices): same state, all scatters land.

usage: python _compare_adap_devices.py METHOD STEPS; prints one JSON object.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust import parallel  # noqa: E402
from jaxrobust.configs.base import base_config  # noqa: E402
from jaxrobust.data import load_dataset  # noqa: E402
from jaxrobust.data.binary import one_vs_all  # noqa: E402
from jaxrobust.train.loop import Trainer  # noqa: E402


method, steps = sys.argv[1], int(sys.argv[2])
assert jax.device_count() == 8, jax.devices()
train = one_vs_all(load_dataset("digits", "train").take(640), 3)
out = {}
final, dup = {}, {}
for nd in (1, 8):
  cfg = base_config()
  cfg["output_dir"] = f"/tmp/jaxrobust_adap_cmp_{os.getpid()}_{nd}"
  cfg["data"].update(sampler="positive_balanced")
  cfg["model"] = {"name": "mlp", "head": "single_logit", "hidden_sizes": (32,)}
  cfg["method"] = {"name": method, "eps": 0.1, "step_size": 0.04, "steps": 2, "lam": 0.8}
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=2e-4, schedule="constant")
  cfg["train"].update(epochs=1, batch_size=64, num_devices=nd, checkpoint_every_steps=10000)
  trainer = Trainer(cfg, train_ds=train, test_ds=train, progress=False)
  first = next(iter(trainer.batches(0)))
  state0 = trainer.init_state()
  s1, _ = trainer.step_fn(state0, parallel.shard_batch({k: first[k] for k in ("image", "label", "index")},
                                                      trainer.mesh))
  ua = np.asarray(jax.device_get(s1.method_state.u_all))
  pos_idx = first["index"][first["label"] == 1]
  out[f"landed_{nd}"] = bool(set(np.flatnonzero(ua > 0)) == set(pos_idx.tolist()))
  # one positive index on device 0 (row 0) and device 5 (row 40, relabelled positive): last write wins
  b = {k: np.array(first[k]) for k in ("image", "label", "index")}
  b["index"][40], b["label"][40] = b["index"][0], 1
  b["image"][40] = np.clip(b["image"][40] * 0.5, 0, 1)
  s_dup, _ = trainer.step_fn(trainer.init_state(), parallel.shard_batch(b, trainer.mesh))
  dup[nd] = float(jax.device_get(s_dup.method_state.u_all)[b["index"][0]])
  if nd == 1:  # what row 40 (the later write) and row 0 would store: gamma1 * mean_j L[i, j]
    from jaxrobust.methods.adap_state import squared_hinge_matrix
    z = trainer.module.apply({"params": jax.device_get(trainer.init_state().params)}, b["image"])[:, 0]
    mat = np.asarray(squared_hinge_matrix(jax.nn.sigmoid(z)))
    out["dup_expected_row40"], out["dup_row0"] = 0.1 * float(mat[40].mean()), 0.1 * float(mat[0].mean())
  state = trainer.fit(state=trainer.init_state(), resume=False, max_steps=steps)
  final[nd] = jax.device_get(state)
  out[f"cache_size_{nd}"] = trainer.step_fn._cache_size()
  trainer.checkpointer.close()
diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                     if np.size(a) else 0.0, final[1], final[8])
out["maxdiff"] = max(jax.tree.leaves(diffs))
out["maxdiff_method_state"] = max(jax.tree.leaves(diffs.method_state))
out["steps"] = [int(final[1].step), int(final[8].step)]
out["u_nonzero"] = int(np.sum(np.asarray(final[8].method_state.u_all) > 0))
out["dup_1"], out["dup_8"] = dup[1], dup[8]
print(json.dumps(out))
