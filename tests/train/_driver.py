"""Subprocess driver for engine tests: trains a tiny config, optionally SIGKILLs itself.

usage: python _driver.py OUT_DIR NUM_DEVICES KILL_AT_STEP(-1 = never) METHOD MODEL
Writes OUT_DIR/final_params.npz when training finishes.
"""

import os
import signal
import sys

out_dir, num_devices, kill_at, method, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if num_devices > 1:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust.configs import load_config  # noqa: E402
from jaxrobust.train.loop import Trainer  # noqa: E402

overrides = [f"method.name={method}", f"model.name={model}", "train.epochs=3", "train.batch_size=64",
             "train.checkpoint_every_steps=10", "data.train_subset=640", f"train.num_devices={num_devices}"]
if method == "pgd_at":
  overrides += ["method.eps=0.2", "method.step_size=0.05", "method.steps=3"]
cfg = load_config("quickstart_digits", overrides)
cfg["output_dir"] = out_dir


def maybe_kill(step, state):
  if step == kill_at:
    os.kill(os.getpid(), signal.SIGKILL)


trainer = Trainer(cfg, progress=False)
state = trainer.fit(on_step=maybe_kill)
flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in
        jax.tree_util.tree_flatten_with_path(trainer.variables(state))[0]}
np.savez(os.path.join(out_dir, "final_params.npz"), **flat)
print("cache_size", trainer.step_fn._cache_size())
