"""Datasets as in-memory arrays, deterministic sharded batching, and jittable augmentation.

    ds = load_dataset('cifar10', 'train')           # ArrayDataset, uint8 (N, 32, 32, 3)
    train, val, test = load_splits(cfg['data'])     # a config's splits (subsets, binary tasks)
    for batch in batch_iterator(ds, 128, seed=0, epoch=e):
      x = random_crop_flip(key, batch['image'])     # float32 [0, 1]

'digits' (scikit-learn) needs no setup; other datasets come from official files (data_dir,
$JAXROBUST_DATA_DIR, the project's shared data) or tensorflow-datasets.
"""

from jaxrobust.data.dataset import ArrayDataset, DatasetNotFoundError
from jaxrobust.data.info import (CELEB_A_ATTRIBUTES, CIFAR100_COARSE_CLASSES,
                                 CIFAR100_FINE_CLASSES, CIFAR100_FINE_TO_COARSE, CIFAR10_CLASSES,
                                 DATASET_INFO, DATASET_NAMES, DatasetInfo, dataset_info)
from jaxrobust.data.pipeline import (batch_iterator, epoch_order, num_batches, random_crop_flip,
                                     steps_per_epoch)
from jaxrobust.data.positive_balanced import positive_balanced_iterator, positive_balanced_rows
from jaxrobust.data.registry import SOURCES, load_dataset, search_folders, shared_data_root
from jaxrobust.data.splits import Splits, load_splits
from jaxrobust.data.tfds_source import build_tfds_from_manual

__all__ = [
    "ArrayDataset", "DatasetNotFoundError", "DatasetInfo", "DATASET_INFO", "DATASET_NAMES",
    "dataset_info", "load_dataset", "SOURCES", "search_folders", "shared_data_root",
    "build_tfds_from_manual", "batch_iterator", "epoch_order", "num_batches", "steps_per_epoch",
    "random_crop_flip", "positive_balanced_iterator", "positive_balanced_rows", "Splits", "load_splits",
    "CIFAR10_CLASSES", "CIFAR100_FINE_CLASSES", "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_TO_COARSE", "CELEB_A_ATTRIBUTES",
]
