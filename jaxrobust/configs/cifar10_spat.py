"""SPAT (Hou, Han, Li 2023) on CIFAR-10, ResNet-18 with the cosine head (AAAI 2023, eqs. 9-15).

    jaxrobust train --config cifar10_spat --output-dir runs/cifar10_spat

``train_cifar10.py``: SGD lr 0.1, momentum 0.9, wd 2e-4, batch 128, 100 epochs, lr /10 from
(1-indexed) epochs 75 and 90; training attack: 10 steps of 0.007 maximising L_rob^sp itself from
x + 0.001 N(0, I), eps 0.031. Loss: s = 5 (the paper's default; code default 8:
``method.s=8``), m (paper beta) 0.2, n (paper alpha) 0.2, beta (paper lambda) 6. The paper's tables
use ResNet-18 (the code's main() builds WRN-34-10: ``model.name=wrn34_10``).
Evaluation (paper Table 6, all eps 8/255): FGSM, PGD-20 (step eps/10), PGD-100, MIM-20, FAB, CW-Linf,
AutoAttack. Table 6: 84.08 / 61.71 / 58.33 / 58.11 / 58.93 / 48.54 / 50.60 / 48.09; Table 1
(s = 5): 84.26 / PGD-20 59.56.
Note: the reference measures clean accuracy with normalize=False (only the bias can change the
argmax); here clean accuracy uses the same cosine logits the attacks see.

Expected cost: ~1.2 GPU-hours training on one H100 (ResNet-18, 12 passes per step, 100 epochs),
plus ~0.5 h evaluation (7 attacks); an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 8 / 255


def spat_eval_attacks(eps: float = EPS) -> list:
  return [
      {"name": "fgsm", "label": "FGSM", "eps": eps},
      {"name": "pgd", "label": "PGD-20", "eps": eps, "steps": 20, "step_size": eps / 10, "init": "uniform"},
      {"name": "pgd", "label": "PGD-100", "eps": eps, "steps": 100, "step_size": eps / 10, "init": "uniform"},
      {"name": "mim", "label": "MIM-20", "eps": eps, "steps": 20, "step_size": eps / 10},
      {"name": "fab", "label": "FAB", "eps": eps, "n_iter": 100},
      {"name": "cw_linf", "label": "CW-Linf", "eps": eps, "steps": 20, "step_size": eps / 10},
      {"name": "autoattack", "label": "AA", "eps": eps, "version": "standard"},
  ]


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_spat"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "resnet18", "head": "cosine"}
  cfg["method"] = {"name": "spat", "eps": 0.031, "step_size": 0.007, "steps": 10, "s": 5.0, "m": 0.2,
                   "n": 0.2, "beta": 6.0}
  # The script tests 1-indexed epochs (epoch >= 75, >= 90): 0-indexed 74 and 89.
  cfg["optim"].update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=2e-4,
                      schedule="piecewise", boundaries=(74, 89), decay=0.1)
  cfg["train"].update(epochs=100, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=spat_eval_attacks())
  return cfg
