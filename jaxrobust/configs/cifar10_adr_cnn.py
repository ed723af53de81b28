"""ADR-ADV (Bui et al. 2020, ECCV) on CIFAR-10 with the C&W CNN (Ch. 3, Table 2, CNN columns).

    jaxrobust train --config cifar10_adr_cnn --output-dir runs/cifar10_adr_cnn

CNN-4C3F(64): conv64-conv64-pool-conv128-conv128-pool (valid convs, 128*5*5 = 3200 flat; ADR_pt's
128*3*3 is a bug), fc256-fc256. Adam lr 1e-3 (no schedule stated), batch 128, 200 epochs, no weight
decay; lambda_lc = lambda_gb = lambda_smt = lambda_conf = 1 (supp. Table 2); training PGD-10 of 0.007
at eps 0.031. Latent: the penultimate layer (fc2, 256-d), not the thesis's last conv (see mnist_adr).
Evaluation as ``cifar10_adr``. Reference numbers (Nat / NT / MT): ADV 67.86 / 33.12 / 18.73;
ADR-ADV 69.09 / 37.67 / 22.58; TRADES 71.37 / 35.84 / 18.01; ADR-TRADES 69.0 / 39.68 / 26.7.

Expected cost: ~0.5 GPU-hours training on one H100, a few minutes of evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config
from jaxrobust.configs.cifar10_adr import EPS, STEP, adr_cifar_eval_attacks


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_adr_cnn"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "small_cnn", "head": "linear", "channels": (64, 128), "hidden": 256}
  cfg["method"] = {"name": "adr_adv", "eps": EPS, "step_size": STEP, "steps": 10, "lc": 1.0, "gb": 1.0,
                   "smt": 1.0, "conf": 1.0, "alpha": 0.99}
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=0.0, schedule="constant")
  cfg["train"].update(epochs=200, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=adr_cifar_eval_attacks())
  return cfg
