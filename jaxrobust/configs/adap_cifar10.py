"""AdAP paper protocol, CIFAR-10 one-vs-all (Li, Tong, Yang, NeurIPS 2023, Section 5 and Table 6).

ResNet-18 with the ImageNet stem (torchvision), single logit, ImageNet mean/std inside the model;
Adam lr 1e-3 with coupled L2 weight decay 2e-4 (torch Adam), 60 epochs, lr x0.1 after epochs 30 and 45;
batch 128 = 64 positives + 64 negatives (positive-balanced sampler) for AP-type methods, plain shuffled
batches for the baselines (``data.sampler='auto'``: each method declares its batches); training attack PGD-Linf 6 steps,
step 0.01, eps 0.031, start x + 0.001 N; lambda 0.8, gamma1 0.1, gamma2 0.9 (the authors' code
defaults); RandomCrop(32, 4) + horizontal flip.
Data: class ``binary_positive_class`` vs the rest, 80/20 per-class train/validation split (split_seed),
the full test set (10% positives). Evaluation (``eval.ap_attacks``): AP clean, under PGD-10 (BCE, step
0.007, eps 0.031) and APGD-CE-10 (eps 8/255), added to report.json by ``jaxrobust train``.

    jaxrobust train --config adap_cifar10                                       # AdAP_LPN, class 1
    jaxrobust train --config adap_cifar10 method.name=adap_ln data.binary_positive_class=0
    jaxrobust train --config adap_cifar10 method.name=bce output_dir=runs/c10_ce
    jaxrobust train --config adap_cifar10 method.name=ap_max train.init_from=runs/c10_ce  # AP Max. fine-tune
    jaxrobust train --config adap_cifar10 method.name=trades_binary method.lam=4

The Trainer builds the binary splits and the sampler and starts AP Max. from ``train.init_from``.
Model selection as the paper: after every epoch the validation split's robust AP under PGD-10
(``train.select_split='val'``, ``select_metric='ap'``); CE Min. and AP Max. select on clean AP
(``train.select_attack=None``). The transfer column (PGD-20, step 0.003, from the selected CE model):
``eval.transfer_from=runs/c10_ce``. The CE model first, then the others:

    jaxrobust train --config adap_cifar10 method.name=bce train.select_attack=None output_dir=runs/c10_ce
    jaxrobust train --config adap_cifar10 eval.transfer_from=runs/c10_ce

``experiments/adap/run_reduced.py`` runs the whole table on the reduced protocol.
Runtime: about 3200 s per method on an A10 (paper Table 7); the paper's grid also tunes lr in
{1e-3, 1e-4, 1e-5} and lambda / gammas.
"""

from jaxrobust.configs.base import base_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
def adap_config(*, name: str, binary_task: str, positive_class, epochs: int, weight_decay: float,
                output_dir: str, val_fraction: float = 0.2) -> dict:
  cfg = base_config()
  cfg["output_dir"] = output_dir
  cfg["data"].update(name=name, augment=True, binary_task=binary_task, binary_positive_class=positive_class,
                     val_fraction=val_fraction, split_seed=0, sampler="auto", pos_num=None)
  cfg["model"] = {"name": "resnet18_imagenet", "head": "single_logit", "mean": IMAGENET_MEAN,
                  "std": IMAGENET_STD}
  # lam is left to each factory's default (AdAP 0.8, TRADES 1, MART 0.8): set method.lam to tune it.
  cfg["method"] = {"name": "adap_lpn", "eps": 0.031, "step_size": 0.01, "steps": 6}
  cfg["optim"].update(name="adam", lr=1e-3, weight_decay=weight_decay, schedule="piecewise",
                      boundaries=(int(0.5 * epochs), int(0.75 * epochs)), decay=0.1, momentum=0.9)
  cfg["train"].update(epochs=epochs, batch_size=128, checkpoint_every_steps=1000, log_every_steps=50,
                      init_from=None, init_reinit_head=True)
  pgd10 = {"name": "pgd", "label": "PGD-10", "loss": "bce", "init": "normal", "eps": 0.031, "steps": 10,
           "step_size": 0.007}
  ap_pgd10 = {k: v for k, v in pgd10.items() if k not in ("loss", "init")}
  cfg["eval"].update(batch_size=500, attacks=[pgd10],  # accuracy report of the generic evaluator
                     ap_attacks=[ap_pgd10, {"name": "apgd_ce", "label": "APGD-CE-10", "eps": 8 / 255, "n_iter": 10}],
                     transfer_from=None)
  # The paper's selection: the epoch with the best validation robust AP (PGD-10).
  cfg["train"].update(eval_every_epochs=1, select_best=True, select_split="val", select_metric="ap",
                      select_attack=dict(ap_pgd10))
  return cfg


def get_config() -> dict:
  return adap_config(name="cifar10", binary_task="ova", positive_class=1, epochs=60, weight_decay=2e-4,
                     output_dir="runs/adap_cifar10")
