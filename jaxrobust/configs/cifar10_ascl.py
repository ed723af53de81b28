"""Leaked-ASCL (Bui et al. 2021) on CIFAR-10, ResNet-20: the thesis's Tables 2, 4, 5 and 7 setting.

    jaxrobust train --config cifar10_ascl --output-dir runs/cifar10_ascl
    jaxrobust train --config cifar10_ascl method.strategy=global --output-dir runs/cifar10_ascl_global

ResNet-20 (z 64-d, no projection head), Adam lr 1e-3 -> 1e-4 at 80 -> 1e-5 at 120 -> 1e-6 at 160,
200 epochs, batch 128 (pool 256), random crop (pad 4) + flip (the thesis: flip + 10% shift);
training PGD-10 of 2/255 at eps 8/255 (uniform start). Loss: CE(x) + CE(x') + 1 * L_SCL + 2 * KL
(batchmean), tau 0.07, cosine similarity, leaked selection, own counterpart always positive.
Evaluation: PGD-250 and mPGD-250 (eta 2/255) on the test set, AutoAttack standard on the first 1000.
Reference numbers (Table 2, Nat / PGD / mPGD / AA): Leaked-ASCL 75.5 / 53.7 / 41.0 / 42.0; ADR 76.8 /
51.5 / 38.9 / 38.6; TRADES 76.1 / 51.9 / 38.2 / 36.3; ADV 78.8 / 48.1 / 36.4 / 36.1. Table 4:
Global 76.4 / 52.7 / 40.4 / 40.9, Hard 75.5 / 53.1 / 41.0 / 41.3, Soft 75.5 / 53.4 / 40.6 / 40.4.
The released code's settings: ``cifar10_ascl_code``; CIFAR-100: ``cifar100_ascl``.

Expected cost: ~2 GPU-hours training on one H100 (ResNet-20, 13 passes per step, 390 steps x 200
epochs); evaluation ~1 h (mPGD-250 is 10 x 250 gradient steps per image); an estimate.
"""

from jaxrobust.configs.base import base_config
from jaxrobust.configs.cifar10_udr import bb_eval_attack

EPS = 8 / 255
STEP = 2 / 255


def ascl_eval_attacks(eps: float = EPS, step: float = STEP, steps: int = 250) -> list:
  return [{"name": "pgd", "label": f"PGD-{steps}", "eps": eps, "steps": steps, "step_size": step},
          {"name": "mpgd", "label": f"mPGD-{steps}", "eps": eps, "steps": steps, "step_size": step},
          {"name": "autoattack", "label": "AA", "eps": eps, "version": "standard", "max_examples": 1000},
          bb_eval_attack(eps)]


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_ascl"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "resnet20", "head": "linear"}
  cfg["method"] = {"name": "ascl", "eps": EPS, "step_size": STEP, "steps": 10, "alpha": 1.0, "beta": 1.0,
                   "lambda_scl": 1.0, "lambda_vat": 2.0, "tau": 0.07, "strategy": "leaked", "distance": "cosine",
                   "normalize": False, "counterpart_always_positive": True, "vat_reduction": "batchmean"}
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=0.0, schedule="piecewise", boundaries=(80, 120, 160),
                      decay=0.1)
  cfg["train"].update(epochs=200, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=ascl_eval_attacks())
  return cfg
