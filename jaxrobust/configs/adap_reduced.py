"""AdAP reduced CPU protocol: Fashion-MNIST one-vs-all, small MLP, a few epochs (minutes on 2 CPU cores).

Fashion-MNIST class 4 ('Coat', 10% positives) vs the rest; the first 10000 training images split 80/20
per class into train / validation, the first 2000 test images; MLP 784-256-128-1 (a CNN is ~15-50x
slower per step on a shared 2-core CPU); Adam lr 1e-3, coupled L2 2e-4, 8 epochs, lr x0.1 after
epochs 4 and 6; batch 128 (64 positives + 64 negatives for AP-type methods). eps = 0.1 (the usual
Fashion-MNIST budget) with the paper's step ratios: training PGD 6 steps of eps/3.1, evaluation PGD-10
with steps of eps/4.43 (0.007/0.031) and APGD-CE-10; ``experiments/adap/run_reduced.py`` adds PGD-20
transferred from the CE model, with steps of eps*0.003/0.031.

    python -m experiments.adap.run_reduced            # all methods + lambda sweep -> experiments/adap/results/
    jaxrobust train --config adap_reduced method.name=adap_ln
"""

from jaxrobust.configs.adap_cifar10 import adap_config

EPS = 0.1


def get_config() -> dict:
  cfg = adap_config(name="fashion_mnist", binary_task="ova", positive_class=4, epochs=8, weight_decay=2e-4,
                    output_dir="runs/adap_reduced")
  cfg["data"].update(augment=False, train_subset=10000, test_subset=2000)
  cfg["model"] = {"name": "mlp", "head": "single_logit", "hidden_sizes": (256, 128)}
  cfg["method"].update(eps=EPS, step_size=EPS / 3.1, steps=6)
  cfg["optim"].update(boundaries=(4, 6))
  cfg["train"].update(checkpoint_every_steps=100000, log_every_steps=20)
  pgd10 = {"name": "pgd", "label": "PGD-10", "eps": EPS, "steps": 10, "step_size": EPS * 0.007 / 0.031}
  cfg["eval"].update(batch_size=500, attacks=[dict(pgd10, loss="bce", init="normal")],
                     ap_attacks=[pgd10, {"name": "apgd_ce", "label": "APGD-CE-10", "eps": EPS, "n_iter": 10}])
  cfg["train"]["select_attack"] = dict(pgd10)  # validation robust AP at this protocol's eps
  return cfg
