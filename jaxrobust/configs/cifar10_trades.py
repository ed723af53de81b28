"""TRADES (Zhang et al. 2019) on CIFAR-10, WRN-34-10: ``yaodongyu/TRADES`` ``train_trades_cifar10.py``.

    jaxrobust train --config cifar10_trades --output-dir runs/cifar10_trades

SGD lr 0.1, momentum 0.9, wd 2e-4, batch 128, 76 epochs, lr x0.1 from (1-indexed) epoch 75, i.e.
the last two epochs; attack: 10 steps of 0.007 on KL(p(x) || p(x')) from x + 0.001 N(0, I),
eps 0.031; beta 6. Evaluation: FGSM, PGD-20 (step 0.003, as ``pgd_attack_cifar10.py``),
CW-Linf and AutoAttack standard at eps 0.031.
Reference numbers: TRADES README WRN-34-10 natural 84.92, PGD-20 56.61; AutoAttack 53.08 (AA
leaderboard); UDR Table 4 (its own run) 85.70 / PGD-100 56.97 / AA 53.82.

Expected cost: ~6 GPU-hours training on one H100 (WRN-34-10 is ~8x ResNet-18's FLOPs; 12
forward/backward passes per step, 390 steps x 76 epochs), plus ~1 h evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.031


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_trades"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "wrn34_10", "head": "linear"}
  cfg["method"] = {"name": "trades", "eps": EPS, "step_size": 0.007, "steps": 10, "beta": 6.0}
  # The script tests 1-indexed epochs (`epoch >= 75`); our boundaries count 0-indexed epochs.
  cfg["optim"].update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=2e-4,
                      schedule="piecewise", boundaries=(74,), decay=0.1)
  cfg["train"].update(epochs=76, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=[
      {"name": "fgsm", "label": "FGSM", "eps": EPS},
      {"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": 0.003, "init": "uniform"},
      {"name": "cw_linf", "label": "CW-Linf", "eps": EPS, "steps": 20, "step_size": 0.003, "kappa": 50.0},
      {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard"},
  ])
  return cfg
