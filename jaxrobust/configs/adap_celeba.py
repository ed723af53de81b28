"""AdAP paper protocol, CelebA attribute tasks (Li, Tong, Yang, NeurIPS 2023, Table 6).

Gray_Hair has 4.24% positives, Mustache 4.08%.

ResNet-18 (ImageNet stem) single logit, Adam lr 1e-3 with coupled L2 1e-5, 32 epochs, x0.1 after 16
and 24, batch 128 = 64 + 64, training PGD 6 x 0.01 at eps 0.031; official train / validation / test
splits (``load_dataset('celeb_a', split, label_mode='attr:Gray_Hair')``, tfds). The paper does not
give CelebA's image preprocessing: images are used at their stored 218x178 size.

    jaxrobust train --config adap_celeba
    jaxrobust train --config adap_celeba data.binary_task=attr:Mustache output_dir=runs/adap_celeba_mustache
"""

from jaxrobust.configs.adap_cifar10 import adap_config


def get_config() -> dict:
  cfg = adap_config(name="celeb_a", binary_task="attr:Gray_Hair", positive_class=None, epochs=32,
                    weight_decay=1e-5, output_dir="runs/adap_celeba")
  cfg["data"]["augment"] = False  # random_crop_flip pads 4 px on 32x32 CIFAR; no CelebA recipe in the paper
  return cfg
