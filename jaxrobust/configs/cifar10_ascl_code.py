"""ASCL as the released code runs it (``tuananhbui89/ASCL`` ``run_cifar10.py``): ResNet-18, CIFAR-10.

    jaxrobust train --config cifar10_ascl_code --output-dir runs/cifar10_ascl_code

Code-faithful settings (spec columns "released code"): no clean CE (alpha 0), tau 0.2, linf distance
on L2-normalised latents, KL with the code's reduction='mean' (divided by C), lambda_vat 2, the own
counterpart a positive only when its prediction agrees, the training attack in train-mode BN; SGD lr
0.1, momentum 0.9, wd 5e-4, x0.1 at 100 and 105, 120 epochs, batch 128; PGD-10 of 0.007 at eps 0.031.
The checkpoint with the best test PGD-10 accuracy is kept and evaluated (``train.select_best``).
Evaluation (``02e_evaluate_robustness.py``): PGD-200 (eta 0.007) and APGD-CE + APGD-T on the test set.
Not reproduced: the code's projection head (Linear 512 -> 128) and its two augmented views per
image (pool 4B); both are absent from the thesis's main results. Reference: the repository README,
PGD-AT robust-loss-only 82.75 / PGD-200 52.93 / AA 48.8.

Expected cost: ~5 GPU-hours training on one H100 (ResNet-18, 13 passes per step, 390 steps x 120
epochs, plus a PGD-10 test pass per epoch); an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.031
STEP = 0.007


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_ascl_code"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "resnet18", "head": "linear"}
  cfg["method"] = {"name": "ascl", "eps": EPS, "step_size": STEP, "steps": 10, "alpha": 0.0, "beta": 1.0,
                   "lambda_scl": 1.0, "lambda_vat": 2.0, "tau": 0.2, "strategy": "leaked", "distance": "linf",
                   "normalize": True, "counterpart_always_positive": False, "vat_reduction": "elementmean",
                   "attack_bn": "train"}
  cfg["optim"].update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                      schedule="piecewise", boundaries=(100, 105), decay=0.1)
  pgd10 = {"name": "pgd", "label": "PGD-10", "eps": EPS, "steps": 10, "step_size": STEP}
  cfg["train"].update(epochs=120, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50,
                      eval_every_epochs=1, select_best=True, select_attack=pgd10)
  cfg["eval"].update(batch_size=500, attacks=[
      {"name": "pgd", "label": "PGD-200", "eps": EPS, "steps": 200, "step_size": STEP},
      {"name": "autoattack", "label": "AA (APGD-CE, APGD-T)", "eps": EPS, "version": "standard",
       "attacks": ["apgd-ce", "apgd-t"]}])
  return cfg
