"""CCE-RM (Bui et al. 2021, AAAI, crossing collaborative ensemble) on CIFAR-10: two members, the thesis protocol
(spec cce_tamoo.md A3-A4, A7; Table 3).

    jaxrobust train --config cifar10_cce --output-dir runs/cifar10_cce
    jaxrobust train --config cifar10_cce method.mode=dm --output-dir runs/cifar10_cce_dm
    jaxrobust train --config cifar10_cce model.members=3 --output-dir runs/cifar10_cce3

Members: ``MEMBER_MODEL`` below. The paper's CNN-CIFAR10 (Table 4: 2x conv64, pool, 2x conv128, pool, fc256,
fc256) is being added as ``cce_cnn_cifar10`` on another branch; until it lands the members are ResNet-20 (Table 3's
ResNet columns; no ``width`` key: the Keras resnet_v1(depth=20) has 16/32/64 filters). Switch by setting
``MEMBER_MODEL = CNN_MODEL`` once it exists: the training attack (``TRAIN_ATTACK``) and the evaluation steps
(``EVAL_STEPS``: k = 250 for ResNet, 100 for the CNN) follow (a bare ``model.name=...`` override would not).

Training: Adam lr 1e-3, x0.1 after epochs 80 / 120 / 160 (the code's ``epoch > 80`` with Keras's 0-indexed
epochs: boundaries 81 / 121 / 161), 180 epochs, batch 64; Keras ``l2(1e-4)`` (penalty 1e-4 ||w||^2, gradient
2e-4 w) on the conv kernels is coupled weight decay 2e-4 here, on every parameter. Random flip + shift
(the thesis's 10 % shifts; here the 4-pixel crop). Training PGD-10 from a uniform start on each member alone
(CCE) or on the ensemble (ADV-EN, ADP), labels the true y (the code's own-prediction label:
method.attack_label=prediction). Its budget follows the members (``TRAIN_ATTACK``, spec A4): the ResNet runs use
the ADP setting, one eps ~ U(0.01, 0.05) per batch and step eps / 10 (``method.eps_range``); the CNN runs eps
8/255, step 2/255.
The code also subtracts the scalar training-pixel mean; inputs here stay in [0, 1].
Evaluation: white-box PGD / BIM / MIM on the ensemble (log of the mean probability), eps 8/255, step 2/255,
and AutoAttack (standard) on 1000 test images. Reference numbers (Table 3, ResNet-20, N = 2: Nat / PGD / AA):
ADV-EN 85.3 / 42.8 / 18.5; ADP 85.3 / 44.2 / 17.3; CCE-RM 84.5 / 45.8 / 18.8.

Expected cost: ~6 GPU-hours training on one H100 (two ResNet-20 members, 2 x 10 attack passes and 6 member
forwards per step, 781 steps x 180 epochs; the thesis: 356 s per epoch on a Titan RTX), ~30 minutes of
evaluation (k = 250); an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 8 / 255
STEP = 2 / 255
MEMBERS = 2
RESNET_MODEL = {"name": "resnet20", "head": "linear"}
CNN_MODEL = {"name": "cce_cnn_cifar10", "head": "linear"}  # not registered yet (another branch)
MEMBER_MODEL = RESNET_MODEL  # switch to CNN_MODEL once cce_cnn_cifar10 is in the model zoo
EVAL_STEPS = {"resnet20": 250, "cce_cnn_cifar10": 100}
TRAIN_ATTACK = {"resnet20": {"eps_range": (0.01, 0.05), "steps": 10},
                "cce_cnn_cifar10": {"eps": EPS, "step_size": STEP, "steps": 10}}


def cce_eval_attacks(model_name: str = MEMBER_MODEL["name"]) -> list:
  k = EVAL_STEPS.get(model_name, 100)
  return [{"name": "pgd", "label": f"PGD-{k}", "eps": EPS, "steps": k, "step_size": STEP},
          {"name": "bim", "label": f"BIM-{k}", "eps": EPS, "steps": k, "step_size": STEP},
          {"name": "mim", "label": f"MIM-{k}", "eps": EPS, "steps": k, "step_size": STEP},
          {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard", "max_examples": 1000}]


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
  cfg["eval"].update(batch_size=500, attacks=cce_eval_attacks())
  return cfg


def get_config() -> dict:
  return cce_protocol_config({"name": "cce", "mode": "rm"}, "runs/cifar10_cce")
