"""CCE-RM (Bui et al. 2021, AAAI) on MNIST, small and quick: two CNN-MNIST members (2x conv32, pool,
2x conv64, pool, fc200, fc200 = the zoo's small_cnn), for checking a setup, not a paper table.

    jaxrobust train --config mnist_cce --output-dir runs/mnist_cce

Adam lr 1e-3, batch 64, 10 epochs (the thesis trains MNIST for 100), no weight decay. Training PGD-20 of 0.02
at eps 0.3 from a uniform start (the spec gives no MNIST attack; the MNIST-customary eps). Evaluation: PGD-40
(step 0.01) on the ensemble at eps 0.3.

Expected cost: ~5 GPU-minutes training on one H100, a minute of evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.3


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/mnist_cce"
  cfg["data"].update(name="mnist", source="auto", augment=False)
  cfg["model"] = {"name": "small_cnn", "head": "linear", "channels": (32, 64), "hidden": 200, "members": 2}
  cfg["method"] = {"name": "cce", "mode": "rm", "eps": EPS, "step_size": 0.02, "steps": 20}
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=0.0, schedule="constant")
  cfg["train"].update(epochs=10, batch_size=64, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=[
      {"name": "pgd", "label": "PGD-40", "eps": EPS, "steps": 40, "step_size": 0.01}])
  return cfg
