"""SPAT (Hou, Han, Li, AAAI 2023) on MNIST: the paper's 4-conv + 3-FC CNN with the cosine head.

    jaxrobust train --config mnist_spat --output-dir runs/mnist_spat

Paper: training PGD-40, eps 0.3, step 0.01 (on L_rob^sp, from x + 0.001 N(0, I)); 80 epochs,
lr 0.01 (SGD, momentum 0.9, batch 128). The paper states no MNIST lr decay or weight decay and the
repository has no MNIST script, so lr is constant and wd 0 (TRADES' MNIST choice). Loss constants
are the paper's defaults: s 5, m 0.2, n 0.2, beta 6.
Evaluation (paper Table 4, white-box): FGSM, PGD-20, CW-Linf at eps 0.3; AutoAttack is added
(not in the table). Table 4: SPAT 99.21 / FGSM 98.12 / PGD-20 96.64 / CW 96.57.

Expected cost: ~0.4 GPU-hours training on one H100 (small CNN, 42 passes per step, 469 steps x
80 epochs), a few minutes of evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.3
STEP = 0.01


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/mnist_spat"
  cfg["data"].update(name="mnist", source="auto", augment=False)
  cfg["model"] = {"name": "small_cnn", "head": "cosine", "channels": (32, 64), "hidden": 200}
  cfg["method"] = {"name": "spat", "eps": EPS, "step_size": STEP, "steps": 40, "s": 5.0, "m": 0.2,
                   "n": 0.2, "beta": 6.0}
  cfg["optim"].update(name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
                      schedule="constant", boundaries=(), decay=0.1)
  cfg["train"].update(epochs=80, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=[
      {"name": "fgsm", "label": "FGSM", "eps": EPS},
      {"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": STEP, "init": "uniform"},
      {"name": "cw_linf", "label": "CW-Linf", "eps": EPS, "steps": 20, "step_size": STEP},
      {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard"},
  ])
  return cfg
