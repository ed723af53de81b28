"""ADR-ADV (Bui et al. 2020, ECCV) on CIFAR-10 with the thesis's ResNet (Ch. 3, Table 2, ResNet columns).

    jaxrobust train --config cifar10_adr --output-dir runs/cifar10_adr
    jaxrobust train --config cifar10_adr --method adr_trades --output-dir runs/cifar10_adr_trades

The TF code's default ResNet is Madry's non-wide pre-activation net (16/16/32/64 filters, 5 units per
stage, z 64-d); ResNet-20 (He et al. 2016, 16/32/64, z 64-d) is the nearest model of the zoo. SGD lr
0.1, momentum 0.9, wd 2e-4, batch 128, 200 epochs, x0.1 at 100 and 150; random crop + flip.
Training PGD-10 of 0.007 at eps 0.031 (uniform start); lambda_lc = lambda_gb = lambda_smt = 1,
lambda_conf = 0, alpha 0.99. Evaluation (Table 2): PGD-20 (eps 0.031, eta 0.007) non-targeted and
multi-targeted, plus AutoAttack standard on the first 1000 test images as ADR_pt does. Reference
numbers (Nat / NT / MT): ADV 78.84 / 44.08 / 41.20; ADR-ADV 78.43 / 44.72 / 41.43; TRADES 83.27 /
37.52 / 35.05; ADR-TRADES 82.02 / 40.17 / 37.70. The C&W CNN rows: ``cifar10_adr_cnn``.

Expected cost: ~2 GPU-hours training on one H100 (ResNet-20, 13 passes per step, 390 steps x 200
epochs), ~15 minutes of evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.031
STEP = 0.007


def adr_cifar_eval_attacks() -> list:
  return [{"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": STEP},
          {"name": "mpgd", "label": "mPGD-20", "eps": EPS, "steps": 20, "step_size": STEP},
          {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard", "max_examples": 1000}]


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_adr"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "resnet20", "head": "linear"}
  cfg["method"] = {"name": "adr_adv", "eps": EPS, "step_size": STEP, "steps": 10, "lc": 1.0, "gb": 1.0,
                   "smt": 1.0, "conf": 0.0, "alpha": 0.99}
  cfg["optim"].update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=2e-4,
                      schedule="piecewise", boundaries=(100, 150), decay=0.1)
  cfg["train"].update(epochs=200, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=adr_cifar_eval_attacks())
  return cfg
