"""AWP-AT (Wu et al. 2020) on CIFAR-10, WRN-34-10, as UDR Table 4 trains its AWP-AT row (Bui et al., ICLR 2022).

    jaxrobust train --config cifar10_awp_at --output-dir runs/cifar10_awp_at

``csdongxian/AWP`` ``AT_AWP`` settings: PGD-10, eps 8/255, step 2/255, uniform start, CE on x' only;
AWP gamma 0.01, proxy lr 0.01, no warm-up. UDR's WRN recipe: SGD lr 0.1, momentum 0.9, wd 5e-4,
batch 128, 200 epochs, /10 at epochs 100 and 150, CIFAR mean/std normalisation inside the model.
Evaluation (UDR Table 4, full test set): PGD-20, PGD-100 (step 2/255), AutoAttack standard, and
CW-L2 (kappa 0, 1000 Adam steps of lr 0.01, c = 0.5 / 0.7 / 1.0, unbounded: a success anywhere
counts). UDR Table 4 AWP-AT: 85.57 / PGD-100 57.78 / AA 53.91 / CW 49.91, 34.31, 18.97.
Model selection as UDR's code: PGD-20 on the test set after every epoch, the best epoch's
checkpoint kept (``train.select_best``, <output_dir>/best) and evaluated; ``train.select_best=false``
evaluates the last epoch instead. AWP's own PreAct ResNet-18 protocol: ``model.name=preact_resnet18``.

Expected cost: ~16 GPU-hours training on one H100 (WRN-34-10, 13 passes per step incl. the AWP
proxy, 390 steps x 200 epochs), plus ~2 h evaluation (CW-L2 with 1000 steps x 3); an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 8 / 255
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/cifar10_awp_at"
  cfg["data"].update(name="cifar10", source="auto", augment=True)
  cfg["model"] = {"name": "wrn34_10", "head": "linear", "mean": CIFAR10_MEAN, "std": CIFAR10_STD}
  cfg["method"] = {"name": "awp_at", "eps": EPS, "step_size": 2 / 255, "steps": 10, "mix": 1.0,
                   "gamma": 0.01, "proxy_lr": 0.01, "warmup": 0}
  cfg["optim"].update(name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                      schedule="piecewise", boundaries=(100, 150), decay=0.1)
  pgd20 = {"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": 2 / 255, "init": "uniform"}
  cfg["train"].update(epochs=200, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50,
                      eval_every_epochs=1, select_best=True, select_attack=dict(pgd20))
  cw = {"name": "cw_l2", "kappa": 0.0, "steps": 1000, "lr": 0.01}
  cfg["eval"].update(batch_size=500, attacks=[
      pgd20,
      {"name": "pgd", "label": "PGD-100", "eps": EPS, "steps": 100, "step_size": 2 / 255, "init": "uniform"},
      {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard"},
      dict(cw, label="CW-L2 c=0.5", c=0.5),
      dict(cw, label="CW-L2 c=0.7", c=0.7),
      dict(cw, label="CW-L2 c=1.0", c=1.0),
  ])
  return cfg
