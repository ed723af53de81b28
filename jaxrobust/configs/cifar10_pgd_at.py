"""PGD-AT (Madry et al. 2018) on CIFAR-10, ResNet-18, as the MAIL / SPAT tables train their AT rows.

    jaxrobust train --config cifar10_pgd_at --output-dir runs/cifar10_pgd_at

ResNet-18 (CIFAR variant), the ResNet-18 recipe the MAIL and MART code share: SGD lr 0.01,
momentum 0.9, wd 3.5e-3, batch 128, 120 epochs, lr x0.1 at epochs 75, 90, 100; Madry's attack:
PGD-10, eps 8/255, step 2/255, uniform random start, loss = CE on x' only (mix 1).
Evaluation: MAIL's (PGD-20 and PGD-100 step 0.003, CW-Linf, APGD-CE, AutoAttack standard).
Paper tables: MAIL Table 2 AT 84.86 / PGD 48.91 / APGD 47.70 / CW 51.61 / AA 44.90;
SPAT Table 6 Madry 84.35 / PGD-20 46.70 / PGD-100 45.73 / AA 46.90.
Rice et al.'s PreAct ResNet-18 variant (lr 0.1, wd 5e-4, 200 epochs, /10 at 100 and 150):

    jaxrobust train --config cifar10_pgd_at model.name=preact_resnet18 optim.lr=0.1 optim.weight_decay=5e-4 train.epochs=200 "optim.boundaries=(100,150)"

(Rice et al. report the best checkpoint by test PGD accuracy; this loop keeps the last one.)

Expected cost: ~1.3 GPU-hours training on one H100 (11 forward/backward passes of ResNet-18 per
step, 390 steps x 120 epochs), plus ~0.3 h evaluation; an estimate, not measured here.
"""

from jaxrobust.configs.cifar10_mail_at import resnet18_mail_protocol

EPS = 8 / 255


def get_config() -> dict:
  return resnet18_mail_protocol(
      {"name": "pgd_at", "eps": EPS, "step_size": 2 / 255, "steps": 10, "mix": 1.0, "init": "uniform"},
      "runs/cifar10_pgd_at")
