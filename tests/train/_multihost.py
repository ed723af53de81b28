"""One process of a 2-process CPU 'multi-host' run through jax.distributed (gloo collectives).

usage: python _multihost.py OUT_DIR PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES
Each process owns LOCAL_DEVICES CPU devices and reads only its shard of every global batch.
With NUM_PROCESSES=1 it is the single-process reference. Process 0 writes final_params.npz.
"""

import os
import sys

out_dir, pid, nproc, port, local = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local}"
os.environ["JAX_PLATFORMS"] = "cpu"

from jaxrobust import parallel  # noqa: E402

if nproc > 1:
  parallel.initialize_distributed(f"127.0.0.1:{port}", nproc, pid)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust.configs import load_config  # noqa: E402
from jaxrobust.train.loop import Trainer  # noqa: E402

assert jax.process_count() == nproc and jax.device_count() == nproc * local
cfg = load_config("quickstart_digits", ["model.name=resnet20", "train.epochs=1", "data.train_subset=640",
                                        "train.batch_size=64", "train.checkpoint_every_steps=2"])
cfg["output_dir"] = out_dir
trainer = Trainer(cfg, progress=False)
state = trainer.fit(max_steps=3)
host = jax.tree.map(np.asarray, jax.device_get(trainer.variables(state)))
if pid == 0:
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(host)[0]}
  np.savez(os.path.join(out_dir, "final_params.npz"), **flat)
print("done", pid, int(jax.device_get(state.step)))
