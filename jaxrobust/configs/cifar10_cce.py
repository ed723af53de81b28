"""CCE-RM (Bui et al. 2021, AAAI, crossing collaborative ensemble) on CIFAR-10: two members, the thesis protocol
(Table 3).

    jaxrobust train --config cifar10_cce --output-dir runs/cifar10_cce
    jaxrobust train --config cifar10_cce method.mode=dm --output-dir runs/cifar10_cce_dm
    jaxrobust train --config cifar10_cce model.members=3 --output-dir runs/cifar10_cce3

Members: ``MEMBER_MODEL`` below: the paper's CNN-CIFAR10 ``cce_cnn_cifar10`` (Table 4: 2x conv64, pool, 2x
conv128, pool, fc256, fc256), evaluated by ``jaxrobust evaluate --run-dir runs/cifar10_cce --protocol cce_cifar10``.
``MEMBER_MODEL = RESNET_MODEL`` gives Table 3's ResNet-20 members (no ``width`` key: the Keras resnet_v1(depth=20)
has 16/32/64 filters); the training attack (``TRAIN_ATTACK``) and the evaluation steps (``EVAL_STEPS``: k = 250
for ResNet, 100 for the CNN) follow (a bare ``model.name=...`` override would not).

Training: Adam lr 1e-3, x0.1 after epochs 80 / 120 / 160 (the code's ``epoch > 80`` with Keras's 0-indexed
epochs: boundaries 81 / 121 / 161), 180 epochs, batch 64; Keras ``l2(1e-4)`` (penalty 1e-4 ||w||^2, gradient
2e-4 w) on the conv kernels is coupled weight decay 2e-4 here, on every parameter. Random flip + shift
(the thesis's 10 % shifts; here the 4-pixel crop). Training PGD-10 from a uniform start on each member alone
(CCE) or on the ensemble (ADV-EN, ADP), labels the true y (the code's own-prediction label:
method.attack_label=prediction). Its budget follows the members (``TRAIN_ATTACK``): the ResNet runs use
the ADP setting, one eps ~ U(0.01, 0.05) per batch and step eps / 10 (``method.eps_range``); the CNN runs eps
8/255, step 2/255.
The code also subtracts the scalar training-pixel mean; inputs here stay in [0, 1].
Evaluation (``cce_eval_attacks``, the protocol's): white-box PGD / BIM / MIM-100 on the ensemble (log of the mean
probability), eps 8/255, step 2/255, multi-targeted PGD-20, SPSA and AutoAttack (standard) on 1000 test images,
and PGD-20 crafted on each member and on the ensemble (the transferability table). Reference numbers (Table 4,
CNN, N = 2: Nat / PGD-100 / AA): ADV-EN 76.0 / 39.7 / 25.0; ADP 75.9 / 42.2 / 24.4; CCE-RM 76.0 / 44.7 / 29.9.

Expected cost with ResNet-20 members (the CNN members cost the same order): ~6 GPU-hours training on one H100 (two members, 2 x 10 attack passes and 6 member
forwards per step, 781 steps x 180 epochs; the thesis: 356 s per epoch on a Titan RTX), ~30 minutes of
evaluation (k = 250); an estimate.
"""

from jaxrobust.configs.base import base_config
from jaxrobust.configs.cifar10_udr import bb_eval_attack

EPS = 8 / 255
STEP = 2 / 255
MEMBERS = 2
RESNET_MODEL = {"name": "resnet20", "head": "linear"}
CNN_MODEL = {"name": "cce_cnn_cifar10", "head": "linear"}
MEMBER_MODEL = CNN_MODEL  # Table 4 (the protocol cce_cifar10); RESNET_MODEL gives Table 3's members
EVAL_STEPS = {"resnet20": 250, "cce_cnn_cifar10": 100}
TRAIN_ATTACK = {"resnet20": {"eps_range": (0.01, 0.05), "steps": 10},
                "cce_cnn_cifar10": {"eps": EPS, "step_size": STEP, "steps": 10}}


def cce_eval_attacks(eps: float, step: float, members: int = 2, *, pgd_steps: int = 100,
                     transfer_steps: int = 20) -> list:
  """CCE's white-box attacks on the ensemble (Bui et al. 2021, section 5): PGD / BIM / MIM, multi-targeted PGD-20,
  SPSA, AutoAttack and B&B on 1000 points (B&B: 100 steps from a PGD-20 start of radius eps (wPGD1) or 2 eps
  (wPGD2), step eta, 3 runs re-attacking the survivors), plus PGD-20 on each member and on the ensemble for
  Table 6."""
  out = [{"name": "pgd", "label": f"PGD k{pgd_steps}", "eps": eps, "steps": pgd_steps, "step_size": step},
         {"name": "bim", "label": f"BIM k{pgd_steps}", "eps": eps, "steps": pgd_steps, "step_size": step},
         {"name": "mim", "label": f"MIM k{pgd_steps}", "eps": eps, "steps": pgd_steps, "step_size": step},
         {"name": "mpgd", "label": "mul-PGD k20", "eps": eps, "steps": 20, "step_size": step},
         {"name": "spsa", "label": "SPSA", "eps": eps, "steps": 50, "max_examples": 1000},
         {"name": "autoattack", "label": "AutoAttack", "eps": eps, "version": "standard", "max_examples": 1000}]
  out += [bb_eval_attack(eps, f"B&B(wPGD{k})", steps=100, init_eps=k * eps, init_step_size=step, repeats=3)
          for k in (1, 2)]
  transfer = {"name": "pgd", "eps": eps, "steps": transfer_steps, "step_size": step}
  out += [dict(transfer, label=f"PGD-{transfer_steps} member {i}", member=i) for i in range(members)]
  out.append(dict(transfer, label=f"PGD-{transfer_steps}"))
  return out


def cce_protocol_config(method: dict, output_dir: str) -> dict:
  """The CCE chapter's CIFAR-10 protocol (shared by CCE, ADV-EN and ADP): the given method section plus the
  training attack of the members (``TRAIN_ATTACK``)."""
  cfg = base_config()
  cfg["output_dir"] = output_dir
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = dict(MEMBER_MODEL, members=MEMBERS)
  cfg["method"] = dict(method, **TRAIN_ATTACK[MEMBER_MODEL["name"]])
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=2e-4, schedule="piecewise", boundaries=(81, 121, 161),
                      decay=0.1)
  cfg["train"].update(epochs=180, batch_size=64, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=cce_eval_attacks(EPS, STEP, MEMBERS,
                                                                pgd_steps=EVAL_STEPS[MEMBER_MODEL["name"]]))
  return cfg


def get_config() -> dict:
  return cce_protocol_config({"name": "cce", "mode": "rm"}, "runs/cifar10_cce")
