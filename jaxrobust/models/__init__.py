"""Flax models for jaxrobust. Every model is built by ``get_model`` and follows one contract.

* ``module.apply(variables, x, train=False, return_features=False)``: x is (B, H, W, C) float
  in [0, 1]; returns logits (B, K) ((B, 1) for the 'single_logit' head), or
  ``ModelOutput(logits, features)`` with the penultimate features (B, D) before the head.
* Input normalisation (mean/std) happens inside the model, so attacks work in [0, 1] space.
* BatchNorm statistics live in the 'batch_stats' collection: train mode needs
  ``mutable=['batch_stats']``; mlp, small_cnn and lenet5 have none.
* Attacks and losses see only the pure functions from ``make_apply`` / ``make_features_apply``.
* Ensembles (``get_model(name, members=M)``, ``models.ensemble``) are models too: their logits are log of the
  mean member probability; ``make_member_apply`` gives the members' logits (M, B, K).
* Cosine-head models need ``project_cosine_head(params)`` after each optimiser update.
* Any other JAX model (a flax linen or NNX module, or a pure ``apply(params, x)`` with its params) follows the
  same contract through ``as_module`` (``models.external``, whose docstring is the protocol it must meet).
* Such models get the library's fast attack gradients on CPU through ``fast_input_gradients(logits_fn)``
  (the evaluator applies it to every model it attacks).
"""

from jaxrobust.models.classifier import ImageClassifier
from jaxrobust.models.cnn import MLP, LeNet5, SmallCNN
from jaxrobust.models.common import (CIFAR10_MEAN, CIFAR10_STD, DEFAULT_INPUT_SHAPES, IMAGENET_MEAN,
                                     IMAGENET_STD, MNIST_MEAN, MNIST_STD)
from jaxrobust.models.ensemble import Ensemble, member_variables, stack_members
from jaxrobust.models.external import ExternalModel, PureModel, as_module
from jaxrobust.models.fast_gradients import fast_input_gradients
from jaxrobust.models.heads import HEADS, CosineHead, project_cosine_head
from jaxrobust.models.registry import (BN_FREE_MODELS, MODEL_NAMES, count_params, get_model,
                                       init_model, make_apply, make_features_apply,
                                       make_member_apply, model_keywords)
from jaxrobust.models.resnet import PreActResNet, ResNet
from jaxrobust.models.torch_import import (ROBUSTBENCH_MODELS, TORCH_ARCHS, convert_state_dict,
                                           load_robustbench_model, load_torch_model)
from jaxrobust.models.wide_resnet import WideResNet

__all__ = [
  "BN_FREE_MODELS", "CIFAR10_MEAN", "CIFAR10_STD", "DEFAULT_INPUT_SHAPES", "HEADS",
  "IMAGENET_MEAN", "IMAGENET_STD", "MNIST_MEAN", "MNIST_STD", "MODEL_NAMES", "ROBUSTBENCH_MODELS", "TORCH_ARCHS",
  "CosineHead", "PureModel", "Ensemble", "ExternalModel", "ImageClassifier", "LeNet5", "MLP", "PreActResNet",
  "ResNet", "SmallCNN", "WideResNet", "as_module", "convert_state_dict", "count_params", "fast_input_gradients",
  "get_model", "init_model", "load_robustbench_model", "load_torch_model", "make_apply", "make_features_apply",
  "make_member_apply", "member_variables", "model_keywords", "project_cosine_head", "stack_members",
]
