"""get_model and the pure boundary (init_model, make_apply, make_features_apply) around it."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from jaxrobust.models import cnn, efficientnet, googlenet, mobilenet, resnet, vgg, wide_resnet
from jaxrobust.models.classifier import ImageClassifier
from jaxrobust.models.external import factory_keywords, is_factory_path
from jaxrobust.models.ensemble import LAYOUTS as ENSEMBLE_LAYOUTS, Ensemble, batch_major, member_major
from jaxrobust.models.common import Dtype
from jaxrobust.models.microbatch import Microbatch, microbatched
from jaxrobust.models.classifier import PROJECTION_HEADS
from jaxrobust.models.heads import check_head
from jaxrobust.types import ApplyFn, Array, ModelOutput, PRNGKey, PyTree

# The CCE CNNs (Bui et al. 2021, CCE code ``model.py``) are SmallCNN with 'same' 3x3 convs,
# Keras init and Keras's HWC flatten; dropout_rate=0.5 gives the thesis's Table 8 Dropout after fc1
# (the code has none, hence the default 0).
_CCE_CNN = functools.partial(cnn.SmallCNN, conv_padding=1, flatten="hwc", init="keras")

# name -> backbone builder(dtype=..., **kwargs). Backbones without BN: see BN_FREE_MODELS.
_BACKBONES: Dict[str, Callable[..., nn.Module]] = {
  "mlp": cnn.MLP,
  "small_cnn": cnn.SmallCNN,
  "lenet5": cnn.LeNet5,
  # CCE CNN-CIFAR10: 2xconv64-pool-2xconv128-pool, fc256-fc256 (256-d features).
  "cce_cnn_cifar10": functools.partial(_CCE_CNN, channels=(64, 128), hidden=256),
  # CCE CNN-CIFAR100: 3xconv64-pool-3xconv128-pool, 3xfc256 (256-d features).
  "cce_cnn_cifar100": functools.partial(_CCE_CNN, channels=(64, 128), hidden=256, convs_per_stage=3,
                                        num_hidden_layers=3),
  # CCE CNN-MNIST: 2xconv32-pool-2xconv64-pool, fc200-fc200 (200-d features).
  "cce_cnn_mnist": functools.partial(_CCE_CNN, channels=(32, 64), hidden=200),
  "preact_resnet18": resnet.preact_resnet18,
  "resnet18": resnet.resnet18,
  "resnet18_imagenet": resnet.resnet18_imagenet,
  "resnet20": resnet.resnet20,
  "resnet34": resnet.resnet34,
  "resnet50": resnet.resnet50,  # bottleneck blocks, 2048-d features
  "wrn34_10": functools.partial(wide_resnet.WideResNet, depth=34, widen=10),
  "wrn28_10": functools.partial(wide_resnet.WideResNet, depth=28, widen=10),
  "wrn34_20": functools.partial(wide_resnet.WideResNet, depth=34, widen=20),
  "wrn70_16": functools.partial(wide_resnet.WideResNet, depth=70, widen=16),
  # DeepMind's Swish WideResNets (Gowal et al. 2020; Rebuffi et al. 2021); their CIFAR-10 mean/std is the
  # ImageClassifier's mean/std (models.torch_import sets it for RobustBench checkpoints).
  "dm_wrn28_10": functools.partial(wide_resnet.WideResNet, depth=28, widen=10, activation="swish", padding="same"),
  "dm_wrn34_20": functools.partial(wide_resnet.WideResNet, depth=34, widen=20, activation="swish", padding="same"),
  "dm_wrn70_16": functools.partial(wide_resnet.WideResNet, depth=70, widen=16, activation="swish", padding="same"),
  # DeepMind's Swish PreAct ResNet-18 (DMPreActResNet; Rebuffi et al. 2021): 3x3 shortcut convs on the block input.
  "dm_preact_resnet18": functools.partial(resnet.PreActResNet, final_bn=True, shortcut_on_input=True,
                                          shortcut_kernel=3, activation="swish", padding="same"),
  # GAIRAT/MAIL "WRN-32-10" (Wide_ResNet_Madry, depth = 6n + 2) is WRN-34-10 in our convention.
  "wrn32_10": functools.partial(wide_resnet.WideResNet, depth=34, widen=10),
  "wide_resnet": wide_resnet.WideResNet,  # depth=..., widen=... (defaults 34, 10)
  # kuangliu/pytorch-cifar nets (TA-MOO victims, Bui et al. 2023):
  "mobilenet": mobilenet.MobileNet,  # MobileNet v1, CIFAR variant (Howard et al. 2017), 1024-d features
  "vgg16": vgg.VGG,  # VGG-16 with BN (Simonyan & Zisserman 2015), 512-d features on 32x32
  "googlenet": googlenet.GoogLeNet,  # GoogLeNet (Szegedy et al. 2015), 1024-d features
  # EfficientNet-B0 (Tan & Le 2019), 320-d features; dropout_rate 0.2 (train mode needs a 'dropout'
  # rng), drop_connect_rate 0 (kuangliu's effective value, see efficientnet.py).
  "efficientnet_b0": efficientnet.EfficientNet,
}
# 'ensemble' (get_model(..., members=(name, name, ...))) is a heterogeneous Ensemble of the named models.
MODEL_NAMES: Tuple[str, ...] = tuple(_BACKBONES) + ("ensemble",)
BN_FREE_MODELS: Tuple[str, ...] = ("mlp", "small_cnn", "lenet5", "cce_cnn_cifar10", "cce_cnn_cifar100",
                                   "cce_cnn_mnist")


def _channel_tuple(value: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
  # Module fields must be hashable; accept lists and arrays.
  return None if value is None else tuple(float(v) for v in np.ravel(np.asarray(value)))


def get_model(name: str, num_classes: int = 10, *, head: str = "linear", mean=None, std=None,
              dtype: Dtype = jnp.float32, cosine_normalize_features: bool = True,
              projection_head: str = "none", projection_dim: int = 128, members: int | Sequence[str] = 1,
              ensemble_layout: str = "auto", ensemble_combine: str = "mean_probs",
              **kwargs) -> ImageClassifier | Ensemble:
  """Builds model `name` (see MODEL_NAMES) with the given head and in-model normalisation.

  head: 'linear' (Dense K), 'single_logit' (Dense 1, logits (B, 1); num_classes ignored) or
    'cosine' (SPAT; see heads.py and project_cosine_head).
  mean/std: per-channel tuples or None (identity), applied to x in [0, 1] inside the model.
  projection_head / projection_dim: 'none', 'linear' or 'mlp' head for contrastive losses (ASCL),
    returned as ``ModelOutput.projection``; it does not change the logits.
  kwargs go to the backbone, e.g. depth/widen for 'wide_resnet', width for the ResNets,
    shortcut='A' for 'resnet20', final_bn for 'preact_resnet18', hidden_sizes for 'mlp'.
  members: an int M > 1 builds a homogeneous ``Ensemble`` of M independently initialised copies of `name`
    (``models.ensemble``); with name='ensemble', a sequence of model names builds a heterogeneous one
    (every other argument applies to each member). 1: a single model.
  ensemble_layout / ensemble_combine: the member axis ('auto', 'vmap', 'unrolled', 'scan') and the ensemble
    prediction ('mean_probs': log of the mean softmax, the papers'; or 'mean_logits').
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes must be an integer >= 1 (the number of logits); got {num_classes!r}")
  if name == "ensemble" or not isinstance(members, int) or members != 1:
    return _get_ensemble(name, num_classes, members, ensemble_layout, ensemble_combine, head=head, mean=mean,
                         std=std, dtype=dtype, cosine_normalize_features=cosine_normalize_features,
                         projection_head=projection_head, projection_dim=projection_dim, **kwargs)
  if name not in _BACKBONES:
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
  check_head(head)
  if projection_head not in PROJECTION_HEADS:
    raise ValueError(f"projection_head must be one of {PROJECTION_HEADS}; got {projection_head!r}")
  backbone = _BACKBONES[name](dtype=dtype, **kwargs)
  return ImageClassifier(backbone=backbone, num_classes=1 if head == "single_logit" else num_classes,
                         head=head, mean=_channel_tuple(mean), std=_channel_tuple(std), dtype=dtype,
                         cosine_normalize_features=cosine_normalize_features,
                         projection_head=projection_head, projection_dim=int(projection_dim))


def _get_ensemble(name, num_classes, members, layout, combine, **kwargs) -> Ensemble:
  if layout not in ENSEMBLE_LAYOUTS:
    raise ValueError(f"ensemble_layout must be one of {ENSEMBLE_LAYOUTS}; got {layout!r}")
  if name == "ensemble":
    if isinstance(members, (int, str)) or len(members) < 1:
      raise ValueError("model 'ensemble' needs members=(model name, ...), e.g. ('resnet18', 'mobilenet'); "
                       f"got members={members!r}")
    built = tuple(get_model(m, num_classes, **kwargs) for m in members)
    return Ensemble(members=built, layout=layout, combine=combine)
  if not isinstance(members, int) or members < 1:
    raise ValueError(f"members must be an int >= 1 for model {name!r} (a homogeneous ensemble); for different "
                     f"architectures use name='ensemble', members=({name!r}, ...); got {members!r}")
  return Ensemble(member=get_model(name, num_classes, **kwargs), num_members=members, layout=layout,
                  combine=combine)


def model_keywords(name: str) -> Tuple[str, ...]:
  """Keyword arguments ``get_model(name, ...)`` takes: head / normalisation ones and the backbone's.

  A named depth or width (``wrn34_10``'s depth=34, widen=10) is fixed, not a keyword. For a factory path
  'package.module:function' (``models.external``): the factory's own keyword arguments.
  """
  if is_factory_path(name):
    return factory_keywords(name)
  if name not in _BACKBONES and name != "ensemble":
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
  own = [k for k, p in inspect.signature(get_model).parameters.items() if p.kind == p.KEYWORD_ONLY]
  if name == "ensemble":
    return tuple(own)
  return tuple(own) + tuple(k for k in _builder_keywords(_BACKBONES[name]) if k not in own)


def _builder_keywords(builder) -> Tuple[str, ...]:
  if isinstance(builder, functools.partial):
    return tuple(k for k in _builder_keywords(builder.func) if k not in builder.keywords)
  if dataclasses.is_dataclass(builder):  # a flax Module class: its constructor fields
    return tuple(f.name for f in dataclasses.fields(builder) if f.init and f.name not in ("parent", "name"))
  params = inspect.signature(builder).parameters.values()
  return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def init_model(module: nn.Module, key: PRNGKey, input_shape: Sequence[int]) -> Dict[str, PyTree]:
  """Initialises variables: {'params': ...} plus 'batch_stats' for models with BN.

  input_shape: (H, W, C) or (B, H, W, C).
  """
  shape = tuple(input_shape)
  if len(shape) == 3:
    shape = (1,) + shape
  try:
    variables = module.init(key, jnp.zeros(shape, jnp.float32), train=False)
  except ZeroDivisionError as e:  # a Dense layer's fan-in is 0: the feature map shrank to nothing
    raise ValueError(f"{type(module).__name__} cannot be built for input shape {shape[1:]}: the images are too small "
                     "for the architecture (its convolutions and poolings shrink them to an empty feature map); use "
                     "the image size the model was designed for (e.g. 28x28 for the MNIST models, 32x32 for the "
                     "CIFAR ones)") from e
  return dict(variables)


def make_apply(module: nn.Module, microbatch: Microbatch = "auto") -> ApplyFn:
  """apply(variables, x) -> logits, inference mode (BN running stats, no dropout).

  microbatch: rows per chunk of the forward pass ('auto': 32 per device on CPU, whole batch
  elsewhere; None: whole batch). Same logits either way; see ``models.microbatch``.
  """
  def apply(variables: PyTree, x: Array) -> Array:
    return microbatched(lambda xb: module.apply(variables, xb, train=False), microbatch)(x)
  return apply


def make_member_apply(module: nn.Module, microbatch: Microbatch = "auto") -> ApplyFn:
  """apply(variables, x) -> member logits (M, B, K) of an ``Ensemble``, inference mode (attacks on the members,
  e.g. the multi-objective attacks' ENS task set)."""
  if not isinstance(module, Ensemble):
    raise ValueError(f"make_member_apply needs an Ensemble model (get_model(..., members=M)); got "
                     f"{type(module).__name__}")

  def apply(variables: PyTree, x: Array) -> Array:
    # micro-batches cut axis 0: the member logits go batch-first meanwhile
    def rows_first(xb):
      return batch_major(module.apply(variables, xb, train=False, return_features=True)).member_logits
    return jnp.moveaxis(microbatched(rows_first, microbatch)(x), 1, 0)
  return apply


def make_features_apply(module: nn.Module, microbatch: Microbatch = "auto"
                        ) -> Callable[[PyTree, Array], ModelOutput]:
  """apply(variables, x) -> ModelOutput(logits, features), inference mode (microbatch as make_apply)."""
  def apply(variables: PyTree, x: Array) -> ModelOutput:
    # an ensemble's member arrays go batch-first through the micro-batching
    return member_major(microbatched(
        lambda xb: batch_major(module.apply(variables, xb, train=False, return_features=True)), microbatch)(x))
  return apply


def count_params(params: PyTree) -> int:
  """Number of scalars in a params tree (arrays or ShapeDtypeStructs).

  Given a whole variables dict, counts only its 'params' collection (not batch_stats).
  """
  if isinstance(params, Mapping) and "params" in params:
    params = params["params"]
  return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params)))
