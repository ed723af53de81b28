"""UDR-AWP-AT on CIFAR-10, WRN-34-10: UDR Table 4's code (``train_cifar10_udr.py``; Bui et al., ICLR 2022).

    jaxrobust train --config cifar10_udr_awp_at --output-dir runs/cifar10_udr_awp_at

UDR-PGD* (CE on the soft-ball point only) under AWP (gamma 0.01, proxy lr 0.01, no warm-up):
eps 8/255, 10 sign steps of 2/255 from x + U(-eps, eps), tau = alpha; lambda from 1.0 with lr
0.001 (what UDR's run script passes for ``awp_udr_learnable``), updated every 10 batches on the
mean |delta|, clamped at 0. Training, evaluation and model selection as ``cifar10_awp_at`` (the
same code base): SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, 200 epochs, /10 at 100 and 150;
the best test PGD-20 epoch is kept and evaluated (PGD-20, PGD-100, AA, CW-L2 c = 0.5 / 0.7 / 1.0).
UDR Table 4: AWP-AT 85.57 / PGD-100 57.78 / AA 53.91; UDR-AWP-AT 85.51 / 58.65 / 54.40.
The other Table 4 rows: ``--method udr_pgd method.natural=0.0`` (UDR-PGD*, 84.60 / 55.71 / 52.98)
and ``--method udr_trades`` (84.93 / 57.35 / 54.45) with this recipe.

Expected cost: ~16 GPU-hours training on one H100, as ``cifar10_awp_at``; an estimate.
"""

from jaxrobust.configs.cifar10_awp_at import get_config as awp_at_config


def get_config() -> dict:
  cfg = awp_at_config()
  cfg["output_dir"] = "runs/cifar10_udr_awp_at"
  m = cfg["method"]
  cfg["method"] = {"name": "udr_awp_at", "eps": m["eps"], "step_size": m["step_size"], "steps": m["steps"],
                   "gamma": 0.01, "proxy_lr": 0.01, "warmup": 0, "lam_init": 1.0, "lam_lr": 0.001,
                   "lam_period": 10}
  return cfg
