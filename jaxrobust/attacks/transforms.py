"""The seven input transformations of TA-MOO's EoT task set (Bui et al. 2023, Table 9) and EoT model wrappers.

Every transformation is ``t(x, p) -> x'`` on a (B, H, W, C) batch in [0, 1] with a per-example factor
p in [0, 1] (a (B,) vector or a scalar); it keeps the shape and dtype, stays in [0, 1], is pure,
jittable and differentiable in x:

    identity    x
    hflip       flip left-right where p >= 0.5
    vflip       flip up-down where p >= 0.5
    crop        centre crop of scale s = 1 - 0.4 p, resized back (bilinear)
    gamma       x ** g, g = 0.7 + 0.6 p
    brightness  clip(x * (1 + 0.3 p), 0, 1)
    rotate      rotation by -10 + 20 p degrees about the centre (bilinear, zero fill)

Settings (``draw_factor``): 'deterministic' is p = 1 (flips on, crop 0.6, gamma 1.3, brightness 1.3,
angle 10 degrees: the thesis's Table 9); 'stochastic' draws p ~ U(0, 1) from the example's key.
One p is shared by all the transformations of one draw (the thesis's single global factor), but it is
drawn **per example** from the example's key rather than once per batch, so that an example's draws
do not depend on the batch it sits in (each example's distribution of transformations is the
thesis's; only the correlation across the examples of a batch differs).

Differences from the reference (``TAM:utils_data.py``, torchvision functional ops):
* crop: the crop size is not rounded to whole pixels; the crop-and-resize is one bilinear resampling
  ``src = c + s (dst - c)`` (pixel centres, torchvision's ``align_corners=False`` convention).
* rotate: bilinear interpolation (torchvision's default is nearest), zero fill as torchvision.
* gamma: ``max(x, 1e-6) ** g`` so that the gradient is finite at x = 0 (so attacks through it never see NaN).

EoT model wrappers (Athalye et al. 2018, Expectation over Transformation):
* ``transformed_model(logits_fn, transforms, setting, combine)`` -> a randomised model
  ``(x, keys) -> logits`` that transforms x with a fresh draw for every key. Pass it to
  ``pgd(..., randomized=True, eot_iter=n)`` (or ``get_attack('pgd', ..., randomized=True, eot_iter=n)``):
  every PGD step then averages the loss gradient over n fresh draws (torchattacks' EOTPGD), which is
  an unbiased estimate of grad E_t L(f(t(x))), the objective Athalye et al. describe.
* ``eot_logits_fn(logits_fn, transforms, samples=, key=)`` -> a deterministic ``x -> logits``: the mean
  over ``samples`` draws fixed by ``key`` (the same draws at every step of an attack: a fixed surrogate,
  for attacks that take no key; fresh draws per step need the attack to pass keys, as above).
* ``task_logits`` -> (m, B, K): the logits under each of m transformations for one shared draw of p
  (the EoT task set; ``eot.eot_pgd`` and the multi-objective attacks use it).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxrobust.attacks.per_example import example_keys
from jaxrobust.types import Array, LogitsFn

SETTINGS = ("deterministic", "stochastic")
COMBINE = ("mean_logits", "mean_probs", "sample")
GAMMA_FLOOR = 1e-6


def _factor(p, x: Array) -> Array:
  """(B,) factor in x's dtype."""
  return jnp.broadcast_to(jnp.asarray(p, x.dtype), (x.shape[0],))


def _rows(v: Array, x: Array) -> Array:
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


def _check(x: Array) -> None:
  if x.ndim != 4:
    raise ValueError(f"EoT transformations expect images of shape (B, H, W, C); got {x.shape}")


def _bilinear(img: Array, sy: Array, sx: Array) -> Array:
  """img (H, W, C) sampled at source coordinates sy, sx (H, W) (pixel centres), zero outside."""
  h, w = img.shape[0], img.shape[1]
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
  y0i, x0i = y0.astype(jnp.int32), x0.astype(jnp.int32)

  def at(yi, xi):
    ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
    v = img[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
    return jnp.where(ok[..., None], v, jnp.zeros((), img.dtype))

  top = at(y0i, x0i) * (1 - wx) + at(y0i, x0i + 1) * wx
  bottom = at(y0i + 1, x0i) * (1 - wx) + at(y0i + 1, x0i + 1) * wx
  return (top * (1 - wy) + bottom * wy).astype(img.dtype)


def _affine(x: Array, a: Array) -> Array:
  """Per example, out[dst] = x[c + A_b (dst - c)] (bilinear, zero fill); a: (B, 2, 2) on (row, col)."""
  h, w = x.shape[1], x.shape[2]
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  gy, gx = jnp.meshgrid(jnp.arange(h, dtype=x.dtype) - cy, jnp.arange(w, dtype=x.dtype) - cx, indexing="ij")

  def one(img, m):
    sy = cy + m[0, 0] * gy + m[0, 1] * gx
    sx = cx + m[1, 0] * gy + m[1, 1] * gx
    return _bilinear(img, sy, sx)
  return jnp.clip(jax.vmap(one)(x, a.astype(x.dtype)), 0.0, 1.0)


def identity(x: Array, p=None) -> Array:
  return x


def hflip(x: Array, p) -> Array:
  _check(x)
  return jnp.where(_rows(_factor(p, x) >= 0.5, x), x[:, :, ::-1], x)


def vflip(x: Array, p) -> Array:
  _check(x)
  return jnp.where(_rows(_factor(p, x) >= 0.5, x), x[:, ::-1], x)


def crop(x: Array, p) -> Array:
  """Centre crop of scale 1 - 0.4 p resized back: src = c + s (dst - c)."""
  _check(x)
  s = 1.0 - 0.4 * _factor(p, x)
  z = jnp.zeros_like(s)
  return _affine(x, jnp.stack([jnp.stack([s, z], -1), jnp.stack([z, s], -1)], -2))


def gamma(x: Array, p) -> Array:
  _check(x)
  g = _rows(0.7 + 0.6 * _factor(p, x), x)
  return jnp.clip(jnp.power(jnp.maximum(x, GAMMA_FLOOR), g), 0.0, 1.0)


def brightness(x: Array, p) -> Array:
  _check(x)
  return jnp.clip(x * _rows(1.0 + 0.3 * _factor(p, x), x), 0.0, 1.0)


def rotate(x: Array, p) -> Array:
  """Rotation by -10 + 20 p degrees, counter-clockwise as torchvision (source = inverse rotation)."""
  _check(x)
  theta = (-10.0 + 20.0 * _factor(p, x)) * (math.pi / 180.0)
  c, s = jnp.cos(theta), jnp.sin(theta)
  # (row, col) with rows pointing down: a counter-clockwise image rotation by theta reads the source at
  # row' = c*row + s*col, col' = -s*row + c*col relative to the centre.
  return _affine(x, jnp.stack([jnp.stack([c, s], -1), jnp.stack([-s, c], -1)], -2))


TRANSFORMS: dict[str, Callable[[Array, Array], Array]] = {
    "identity": identity, "hflip": hflip, "vflip": vflip, "crop": crop,
    "gamma": gamma, "brightness": brightness, "rotate": rotate,
}
ALIASES = {"I": "identity", "H": "hflip", "V": "vflip", "C": "crop", "G": "gamma", "B": "brightness", "R": "rotate"}
ALL = ("identity", "hflip", "vflip", "crop", "gamma", "brightness", "rotate")  # the thesis's order I H V C G B R


def canonical_transforms(transforms: str | Sequence[str]) -> tuple[str, ...]:
  """Names (or the thesis's letters I H V C G B R; 'all' = the seven) -> canonical names."""
  if isinstance(transforms, str):
    transforms = ALL if transforms == "all" else (transforms,)
  out = []
  for t in transforms:
    name = ALIASES.get(t, t)
    if name not in TRANSFORMS:
      raise ValueError(f"unknown EoT transformation {t!r}; expected one of {ALL} or {tuple(ALIASES)}")
    out.append(name)
  if not out:
    raise ValueError("need at least one EoT transformation")
  return tuple(out)


def draw_factor(keys, x: Array, setting: str) -> Array:
  """(B,) factor p: ones ('deterministic') or U(0, 1) from each example's key ('stochastic')."""
  if setting not in SETTINGS:
    raise ValueError(f"unknown EoT setting {setting!r}; expected one of {SETTINGS}")
  if setting == "deterministic":
    return jnp.ones((x.shape[0],), x.dtype)
  keys = example_keys(keys, x.shape[0])
  return jax.vmap(lambda k: jax.random.uniform(k, (), x.dtype))(keys)


def apply_transforms(x: Array, p: Array, transforms: Sequence[str]) -> Array:
  """(m, B, H, W, C): x under each transformation with the shared factor p."""
  return jnp.stack([TRANSFORMS[t](x, p) for t in canonical_transforms(transforms)])


def random_transform(transform: str, setting: str = "stochastic") -> Callable[[Array, Array], Array]:
  """``t(x, keys) -> x'``: one transformation with its factor drawn from the per-example keys (a key or (B,))."""
  name = canonical_transforms(transform)[0]
  return lambda x, keys: TRANSFORMS[name](x, draw_factor(keys, x, setting))


def task_logits(logits_fn: LogitsFn, x: Array, keys, transforms: Sequence[str] = ALL,
                setting: str = "stochastic") -> Array:
  """(m, B, ...) logits of x under each of the m transformations, one factor p per example shared by all
  of them (drawn from ``keys``: a key or a (B,) batch; unused when 'deterministic'). One model call on the
  m * B stacked inputs."""
  transforms = canonical_transforms(transforms)
  p = draw_factor(keys, x, setting)
  xt = apply_transforms(x, p, transforms)
  z = logits_fn(xt.reshape((-1,) + x.shape[1:]))
  return z.reshape((len(transforms), x.shape[0]) + z.shape[1:])


def combine_logits(z: Array, combine: str, axis: int = 0) -> Array:
  """Mean over ``axis`` of logits ('mean_logits') or log of the mean softmax ('mean_probs'; softmax of the
  result is the mean probability)."""
  if combine == "mean_logits":
    return jnp.mean(z, axis=axis)
  if combine == "mean_probs":
    return jax.nn.logsumexp(jax.nn.log_softmax(z, axis=-1), axis=axis) - jnp.log(z.shape[axis])
  raise ValueError(f"unknown EoT combine {combine!r}; expected 'mean_logits' or 'mean_probs'")


def transformed_model(logits_fn: LogitsFn, transforms: str | Sequence[str] = "all", setting: str = "stochastic",
                      combine: str = "sample"):
  """A randomised model ``(x, keys) -> logits`` (keys: one key or a (B,) batch of per-example keys).

  combine: 'sample' (Athalye's EoT distribution: each example draws one of the transformations uniformly and
  its factor p), 'mean_logits' or 'mean_probs' (all the transformations with one shared p, combined).
  With a single transformation the three agree up to 'mean_probs' giving log-softmax logits.
  """
  transforms = canonical_transforms(transforms)
  if combine not in COMBINE:
    raise ValueError(f"unknown EoT combine {combine!r}; expected one of {COMBINE}")

  def model(x, keys):
    if len(transforms) == 1 and combine == "sample":
      return logits_fn(TRANSFORMS[transforms[0]](x, draw_factor(keys, x, setting)))
    if combine != "sample":
      return combine_logits(task_logits(logits_fn, x, keys, transforms, setting), combine)
    ks = example_keys(keys, x.shape[0])
    pick_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(ks)
    which = jax.vmap(lambda k: jax.random.randint(k, (), 0, len(transforms)))(pick_keys)
    p = draw_factor(ks, x, setting)
    xt = apply_transforms(x, p, transforms)                                   # (m, B, ...)
    chosen = jnp.take_along_axis(xt, which.reshape((1, -1) + (1,) * (x.ndim - 1)), axis=0)[0]
    return logits_fn(chosen)
  return model


def eot_logits_fn(logits_fn: LogitsFn, transforms: str | Sequence[str] = "all", *, samples: int, key,
                  setting: str = "stochastic", combine: str = "mean_logits") -> LogitsFn:
  """``x -> logits``: the combination ('mean_logits' or 'mean_probs') over ``samples`` draws of p and over
  the transformations, the draws fixed by ``key`` (draw s, example i uses fold_in(fold_in(key, s), i)).

  The draws are the same at every call, so an attack sees a fixed average of transformed models; fresh draws
  at every step need a keyed attack (``pgd(..., randomized=True, eot_iter=n)`` with ``transformed_model``).
  """
  transforms = canonical_transforms(transforms)
  if samples < 1:
    raise ValueError(f"need samples >= 1; got {samples}")

  def fn(x):
    z = jnp.concatenate([task_logits(logits_fn, x, jax.random.fold_in(key, s), transforms, setting)
                         for s in range(samples)])
    if z.shape[0] == 1:
      return z[0]
    return combine_logits(z, combine)
  return fn


# Helpers, not attacks: nothing to register.
REGISTRY: dict = {}
