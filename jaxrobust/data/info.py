"""Static facts about the supported datasets: shapes, classes, splits, label modes.

Nothing here reads files; loaders and models use it to size things before any data exists.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")
# The standard fine -> coarse table (as hard-coded in OvA_CIFAR100.coarse_labels); used when
# a source only carries fine labels (e.g. an .npz without coarse labels).
CIFAR100_FINE_TO_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13], dtype=np.int32)
SVHN_CLASSES = MNIST_CLASSES
CELEB_A_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Shape and label facts of one dataset (for the default label mode).

  image_shape: (H, W, C). default_eps: the customary L-inf budget in [0, 1] pixel units.
  label_modes: accepted `label_mode` values; the first is the default (None = no choice).
  """
  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  splits: tuple[str, ...]
  default_eps: float
  class_names: Optional[tuple[str, ...]]
  label_modes: tuple[Optional[str], ...] = (None,)
  sources: tuple[str, ...] = ("files", "tfds")


DATASET_INFO: dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo("digits", (8, 8, 1), 10, ("train", "test"), 0.3, MNIST_CLASSES,
                    sources=("shipped",)),
        DatasetInfo("mnist", (28, 28, 1), 10, ("train", "test"), 0.3, MNIST_CLASSES),
        DatasetInfo("fashion_mnist", (28, 28, 1), 10, ("train", "test"), 0.3,
                    FASHION_MNIST_CLASSES),
        DatasetInfo("cifar10", (32, 32, 3), 10, ("train", "test"), 8 / 255, CIFAR10_CLASSES),
        DatasetInfo("cifar100", (32, 32, 3), 100, ("train", "test"), 8 / 255,
                    CIFAR100_FINE_CLASSES, label_modes=("fine", "coarse")),
        DatasetInfo("svhn_cropped", (32, 32, 3), 10, ("train", "test", "extra"), 8 / 255,
                    SVHN_CLASSES),
        # Binary tasks on one attribute; label_mode='attr:<name>' is required.
        DatasetInfo("celeb_a", (218, 178, 3), 2, ("train", "validation", "test"), 8 / 255,
                    None, label_modes=tuple(f"attr:{a}" for a in CELEB_A_ATTRIBUTES),
                    sources=("tfds",)),
    )
}

DATASET_NAMES = tuple(DATASET_INFO)


def check_name(name: str) -> DatasetInfo:
  """Returns the DatasetInfo for `name`, or raises ValueError listing the valid names."""
  if name not in DATASET_INFO:
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
  return DATASET_INFO[name]


def resolve_label_mode(name: str, label_mode: Optional[str]
                       ) -> tuple[Optional[str], int, Optional[tuple[str, ...]]]:
  """Validates `label_mode` for `name`; returns (mode, num_classes, class_names).

  cifar100: 'fine' (default, 100 classes) or 'coarse' (20 superclasses).
  celeb_a: 'attr:<Attribute>' (required), a binary label 1 iff the attribute is present.
  Every other dataset takes only None.
  """
  info = check_name(name)
  if name == "cifar100":
    mode = label_mode or "fine"
    if mode == "fine":
      return mode, 100, CIFAR100_FINE_CLASSES
    if mode == "coarse":
      return mode, 20, CIFAR100_COARSE_CLASSES
    raise ValueError(f"cifar100 label_mode must be 'fine' or 'coarse', got {label_mode!r}")
  if name == "celeb_a":
    prefixed = isinstance(label_mode, str) and label_mode.startswith("attr:")
    attr = label_mode[len("attr:"):] if prefixed else None
    if attr not in CELEB_A_ATTRIBUTES:
      raise ValueError(
          f"celeb_a needs label_mode='attr:<Attribute>' (e.g. 'attr:Gray_Hair'), got "
          f"{label_mode!r}; attributes: {', '.join(CELEB_A_ATTRIBUTES)}")
    return label_mode, 2, (f"not_{attr}", attr)
  if label_mode is not None:
    raise ValueError(f"{name} takes no label_mode (got {label_mode!r})")
  return None, info.num_classes, info.class_names


def dataset_info(name: str, label_mode: Optional[str] = None) -> DatasetInfo:
  """DatasetInfo for `name`; with `label_mode` the class count/names follow that mode."""
  info = check_name(name)
  if label_mode is None:  # for celeb_a: shapes are known, the attribute is not.
    return info
  _, num_classes, class_names = resolve_label_mode(name, label_mode)
  return dataclasses.replace(info, num_classes=num_classes, class_names=class_names)
