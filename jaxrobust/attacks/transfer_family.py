"""The transfer-attack family on MI-FGSM (``mim.py``), Linf: DI, TI, NI, SI, VMI / VNI and their combinations.

One core, ``transfer_fgsm``; every named attack is the core with its paper's options switched on.
Per step t (x_0 = x, g_0 = 0, v_0 = 0, alpha the step, mu the decay):

    look  = x_t + alpha mu g_t                       if nesterov (NI, Lin et al. 2020), else x_t
    ghat  = 1/m sum_{i<m} grad_x L(f(D_i(S_i(look))), y)
              S_i(u) = c + (u - c) / 2^i             scale copies (SI, Lin et al. 2020; m = ``scales``)
              D_i    = random resize-and-pad with probability p   (DI, Xie et al. 2019; ``diversity_prob``)
    d     = W * (ghat + v_t)                         W a smoothing kernel, depthwise (TI, Dong et al. 2019)
    g_t+1 = mu g_t + d / ||d||_1                     (MI-FGSM's update, ``mim._normalise``)
    v_t+1 = 1/N sum_n ghat(x_t + r_n) - ghat,  r_n ~ U[-beta eps, beta eps]^d   (VMI / VNI, Wang & He 2021)
    x_t+1 = clip_[0,1](Pi_eps(x_t + alpha sign(g_t+1)))

With every option off it is MI-FGSM, op for op (``mim``). Defaults follow torchattacks 3.5 (the attack
classes DIFGSM, TIFGSM, NIFGSM, SINIFGSM, VMIFGSM, VNIFGSM), except:

* step_size defaults to eps / steps (the papers; torchattacks 2/255 with eps 8/255 and 10 steps).
* Randomness is drawn per example (example i from ``fold_in(key, i)``, then the step, the copy and the
  neighbour folded in), so batch size changes nothing. torchattacks (and the papers' TensorFlow code)
  draw one resize size, one padding and one coin per step for the whole batch; the distribution seen by
  each example is the same.
* VMI with ``n_neighbours=0`` has no variance term (torchattacks divides by N = 0 and returns NaN).
* An all-zero gradient gives a zero step, as in ``mim`` (torchattacks: NaN).

Where torchattacks differs from the papers:

* The momentum buffer's scale (``grad_norm``): the papers write g / ||g||_1, torchattacks (and the authors'
  TensorFlow code for NI/SI and VT) g / mean|g|, d times larger. Without a look-ahead only sign(g_t) is
  used and the two agree; NI's look-ahead x_t + alpha mu g_t moves d times further with 'mean'. So the
  Nesterov attacks (nifgsm, sinifgsm, vnifgsm) default to 'mean' (torchattacks, the authors' code);
  ``grad_norm='l1'`` is the papers' formula as written. The core and the others default to 'l1' as ``mim``.

* DI (``resize_rate``): torchattacks' default 0.9 shrinks the image to a random size in
  [int(0.9 W), W) and zero-pads it back to W x W (the model input keeps its shape); the paper enlarges a
  299 image to [299, 330) and pads to 330 (``resize_rate=330/299``: the model then sees a larger input,
  and an example whose coin says "no diversity" is padded at the bottom right to that size, since
  shapes are static). The default is torchattacks'.
* DI resizes bilinearly with half-pixel centres and no antialiasing (torch ``F.interpolate(...,
  mode='bilinear', align_corners=False)``, the paper's ``tf.image.resize_images`` nearest-neighbour is
  not offered). The padding offset is uniform in [0, rem) in both.
* SI (``scale_center``): torchattacks scales [0, 1] images towards 0 (black), S_i(u) = u / 2^i; the
  paper's code scales [-1, 1] images towards 0, i.e. towards grey, ``scale_center=0.5`` here. Default 0.
* TI: torchattacks' kernel is stacked for 3 channels; here it is applied to every channel (depthwise).
* TI and VMI together: the kernel smooths ghat + v (the VT code's order); DI and SI also apply to the
  neighbour gradients, so VMI-DI-TI-SI is one consistent estimator.

Random resize under jit: each example's resize-and-pad is a linear map per spatial axis, an
(out, in) interpolation matrix built from its (size, offset) with one-hot rows, applied by two
batched contractions (``resize_and_pad``). Shapes are static (out = max(W, int(W r))); sizes and
offsets are traced per example. It equals torch's ``F.interpolate`` + ``F.pad`` to float rounding
(tests/attacks/test_transfer_family.py) and is faster than switching between candidate sizes with
``lax.switch`` over ``jax.image.resize`` (under vmap every branch runs; benchmarks/di_resize_probe.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.mim import _normalise
from jaxrobust.attacks.model_calls import check_logits, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys, fold_keys
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

KERNELS = ("gaussian", "linear", "uniform")


# ----------------------------------------------------------------------------------------
# TI: the smoothing kernel
# ----------------------------------------------------------------------------------------

def smoothing_kernel(kernel: str = "gaussian", len_kernel: int = 15, nsig: float = 3.0) -> np.ndarray:
  """(len_kernel, len_kernel) float32 kernel summing to 1, as torchattacks' TIFGSM (gkern / lkern / ukern).

  'gaussian': the outer product of the normal pdf at linspace(-nsig, nsig, len_kernel); 'linear': a
  tent; 'uniform': a box. len_kernel=1 gives [[1]] (no smoothing).
  """
  if kernel not in KERNELS:
    raise ValueError(f"kernel must be one of {KERNELS} or None; got {kernel!r}")
  if int(len_kernel) != len_kernel or len_kernel < 1:
    raise ValueError(f"len_kernel must be a positive int; got {len_kernel}")
  k = int(len_kernel)
  if kernel == "gaussian":
    t = np.linspace(-nsig, nsig, k)
    k1 = np.exp(-t ** 2 / 2) / np.sqrt(2 * np.pi)
  elif kernel == "linear":
    k1 = 1 - np.abs(np.linspace((-k + 1) / 2, (k - 1) / 2, k) / (k + 1) * 2)
  else:
    k1 = np.ones(k)
  raw = np.outer(k1, k1)
  return (raw / raw.sum()).astype(np.float32)


def smooth(g: Array, kernel: np.ndarray) -> Array:
  """Depthwise 'same' convolution of NHWC g with a (k, k) kernel (zero padding), every channel alike."""
  c = g.shape[-1]
  w = jnp.tile(jnp.asarray(kernel, g.dtype)[:, :, None, None], (1, 1, 1, c))  # HWIO, I = 1 per group
  return jax.lax.conv_general_dilated(g, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=c)


# ----------------------------------------------------------------------------------------
# DI: random resize and pad, per example, static shapes
# ----------------------------------------------------------------------------------------

def _resize_range(n: int, resize_rate: float) -> tuple[int, int]:
  """torchattacks' (low, high): sizes are drawn from [low, high) and padded to high."""
  r = int(n * resize_rate)
  return min(n, r), max(n, r)


def _interp_matrix(size: Array, offset: Array, n_in: int, n_out: int, dtype) -> Array:
  """(n_out, n_in): rows offset..offset+size-1 resample n_in -> size bilinearly (half-pixel centres,
  torch's align_corners=False: src = max((j + 0.5) n_in / size - 0.5, 0)); the other rows are zero."""
  i = jnp.arange(n_out)
  j = i - offset
  scale = jnp.float32(n_in) / size.astype(jnp.float32)
  src = jnp.maximum((j.astype(jnp.float32) + 0.5) * scale - 0.5, 0.0)
  i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), n_in - 1)
  i1 = jnp.minimum(i0 + 1, n_in - 1)
  l1 = src - i0.astype(jnp.float32)
  rows = (1.0 - l1)[:, None] * jax.nn.one_hot(i0, n_in) + l1[:, None] * jax.nn.one_hot(i1, n_in)
  valid = (j >= 0) & (j < size)
  return jnp.where(valid[:, None], rows, 0.0).astype(dtype)


def resize_and_pad(x: Array, size_hw: Array, offset_hw: Array, out_hw: tuple[int, int]) -> Array:
  """x (B, H, W, C) -> (B, out_h, out_w, C): example b resized to size_hw[b] = (h, w) and placed at
  offset_hw[b] = (top, left) in zeros. size_hw, offset_hw: (B, 2) ints (traced)."""
  _, h, w, _ = x.shape
  ah = jax.vmap(lambda s, o: _interp_matrix(s, o, h, out_hw[0], x.dtype))(size_hw[:, 0], offset_hw[:, 0])
  aw = jax.vmap(lambda s, o: _interp_matrix(s, o, w, out_hw[1], x.dtype))(size_hw[:, 1], offset_hw[:, 1])
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("bjw,biwc->bijc", aw, jnp.einsum("bih,bhwc->biwc", ah, x, precision=hi), precision=hi)


def diversity_draws(keys: Array, hw: tuple[int, int], diversity_prob, resize_rate: float):
  """Per-example (size (B, 2), offset (B, 2), out_hw): torchattacks' draws, per example.

  With probability diversity_prob: size uniform in [low, high) (one draw for both axes), offset uniform
  in [0, high - size); else size = the image's, offset 0 (the identity when resize_rate <= 1).
  """
  ranges = [_resize_range(n, resize_rate) for n in hw]
  out_hw = tuple(high for _, high in ranges)

  def one(k):
    k_coin, k_size, k_top, k_left = jax.random.split(k, 4)
    apply = jax.random.uniform(k_coin) < diversity_prob
    u = jax.random.uniform(k_size)
    sizes, offsets = [], []
    for (low, high), n, kk in zip(ranges, hw, (k_top, k_left)):
      size = low + jnp.minimum(jnp.floor(u * max(high - low, 1)).astype(jnp.int32), max(high - low - 1, 0))
      rem = high - size
      off = jnp.minimum(jnp.floor(jax.random.uniform(kk) * rem).astype(jnp.int32), jnp.maximum(rem - 1, 0))
      sizes.append(jnp.where(apply, size, n))
      offsets.append(jnp.where(apply, off, 0))
    return jnp.stack(sizes), jnp.stack(offsets)

  size, offset = jax.vmap(one)(keys)
  return size, offset, out_hw


def input_diversity(keys: Array, x: Array, diversity_prob, resize_rate: float = 0.9) -> Array:
  """DI's transform of NHWC x, one draw per example (keys: (B,) keys)."""
  size, offset, out_hw = diversity_draws(keys, x.shape[1:3], diversity_prob, resize_rate)
  return resize_and_pad(x, size, offset, out_hw)


# ----------------------------------------------------------------------------------------
# The core
# ----------------------------------------------------------------------------------------

def transfer_fgsm(logits_fn: LogitsFn, x: Array, y: Array, key=None, *, eps, step_size=None, steps: int = 10,
                  decay: float = 1.0, nesterov: bool = False, diversity_prob: float = 0.0,
                  resize_rate: float = 0.9, kernel: str | None = None, len_kernel: int = 15, nsig: float = 3.0,
                  scales: int = 1, scale_center: float = 0.0, n_neighbours: int = 0, beta: float = 1.5,
                  grad_norm: str = "l1", loss="ce", targeted: bool = False, init: str = "none",
                  unroll: int | bool | None = None) -> Array:
  """MI-FGSM with the transfer options (module docstring); returns x_adv like x.

  Args:
    x: (B, ...) in [0, 1] (NHWC when diversity_prob > 0 or a kernel is used); y: (B,) labels.
    key: one key (example i uses fold_in(key, i)) or (B,) keys; needed with DI, neighbours or a random init.
    eps, step_size: scalar or (B,); step_size defaults to eps / steps.
    steps: iterations (static).
    decay: momentum mu (0: no momentum).
    nesterov: NI's look-ahead x_t + alpha mu g_t.
    diversity_prob: DI's probability of the random resize-and-pad (0: off; a Python 0 removes the transform).
    resize_rate: DI's resize range: images are resized to [resize_rate H, H] (or up, for rates above 1).
    kernel: TI's gradient smoothing kernel, 'gaussian', 'linear', 'uniform' or None (off).
    len_kernel: TI's kernel size; nsig: its Gaussian's half-width in standard deviations.
    scales: SI's number of scaled copies m (1: off).
    scale_center: the point SI's copies shrink towards (module docstring).
    n_neighbours: VMI's number N of neighbours sampled for the variance (0: off).
    beta: VMI's sampling radius, beta * eps.
    grad_norm: 'l1' (paper) or 'mean' (torchattacks), same signs.
    loss, targeted, init, unroll: as ``mim``.
  """
  if step_size is None:
    step_size = jnp.asarray(eps) / max(steps, 1)
  validate(x, y, eps=eps, step_size=step_size, decay=decay, beta=beta)
  if grad_norm not in ("l1", "mean"):
    raise ValueError(f"grad_norm must be 'l1' or 'mean'; got {grad_norm!r}")
  for name, v, low in (("steps", steps, 0), ("scales", scales, 1), ("n_neighbours", n_neighbours, 0)):
    if int(v) != v or v < low:
      raise ValueError(f"{name} must be an int >= {low}; got {v}")
  use_di = not (isinstance(diversity_prob, (int, float)) and diversity_prob == 0)
  if isinstance(diversity_prob, (int, float)) and not 0 <= diversity_prob <= 1:
    raise ValueError(f"diversity_prob must lie in [0, 1]; got {diversity_prob}")
  if not resize_rate > 0:
    raise ValueError(f"resize_rate must be > 0; got {resize_rate}")
  w_kernel = None if kernel is None else smoothing_kernel(kernel, len_kernel, nsig)
  if (use_di or w_kernel is not None) and x.ndim != 4:
    raise ValueError(f"input diversity and the TI kernel need NHWC images; got x of shape {x.shape}")
  scales, n_neighbours = int(scales), int(n_neighbours)

  sign = -1.0 if targeted else 1.0
  attack_loss = losses_lib.get_attack_loss(loss)
  ref_logits = jax.lax.stop_gradient(logits_fn(x)) if attack_loss.needs_reference else None
  alpha = as_bcast(step_size, x)
  mu = as_bcast(decay, x)
  radius = as_bcast(jnp.asarray(beta, x.dtype) * jnp.asarray(eps, x.dtype), x)
  random = use_di or n_neighbours > 0 or init != "none"
  keys = example_keys(key, x.shape[0]) if random else None
  x0 = random_init(keys, x, eps, "linf", init)
  factors = jnp.asarray([2.0 ** -i for i in range(scales)], x.dtype)  # exact powers of two

  def objective(v, i, k):
    if i is not None:  # SI copy i (copy 0 is the point itself)
      v = scale_center + (v - scale_center) * factors[i]
    if use_di:
      v = input_diversity(k, v, diversity_prob, resize_rate)
    logits = logits_fn(v)
    check_logits(logits, y)
    return sign * jnp.sum(attack_loss(logits, y, ref_logits))

  grad = jax.grad(objective)

  def estimate(point, k):
    """ghat at point: the mean gradient over the SI copies, each through its own DI draw."""
    if scales == 1:
      return grad(point, None, k)

    def body(i, acc):
      return acc + grad(point, i, None if k is None else fold_keys(k, i))
    return jax.lax.fori_loop(0, scales, body, jnp.zeros_like(point)) / scales

  def neighbours(xa, k):
    """1/N sum_n ghat(xa + r_n), r_n uniform in the beta eps cube."""
    def body(n, acc):
      kn = fold_keys(k, n)
      noise = jax.vmap(lambda kk, xi: jax.random.uniform(jax.random.fold_in(kk, 0), xi.shape, xi.dtype,
                                                         -1.0, 1.0))(kn, xa)
      return acc + estimate(xa + radius * noise, fold_keys(kn, 1) if use_di else None)
    return jax.lax.fori_loop(0, n_neighbours, body, jnp.zeros_like(xa)) / n_neighbours

  def step(carry, t):
    xa, m, v = carry
    kt = None if keys is None else fold_keys(keys, t)
    look = xa + (mu * alpha) * m if nesterov else xa
    g = estimate(look, None if kt is None or not use_di else fold_keys(kt, 0))
    d = g + v if n_neighbours else g
    if w_kernel is not None:
      d = smooth(d, w_kernel)
    m = mu * m + _normalise(d, grad_norm)
    if n_neighbours:
      v = neighbours(xa, fold_keys(kt, 1)) - g
    x_new = threat.project_ball_and_box(xa + alpha * jnp.sign(m), x, eps, "linf")
    return (x_new, m, v), None

  zeros = jnp.zeros_like(x)
  (x_adv, _, _), _ = jax.lax.scan(step, (x0, zeros, zeros), jnp.arange(steps, dtype=jnp.uint32),
                                  unroll=resolve_unroll(unroll, steps))
  return x_adv


# ----------------------------------------------------------------------------------------
# The named attacks: the core with their paper's options and torchattacks' defaults
# ----------------------------------------------------------------------------------------

def difgsm(logits_fn, x, y, key=None, *, eps, decay: float = 0.0, diversity_prob: float = 0.5,
           resize_rate: float = 0.9, **kw) -> Array:
  """DI2-FGSM (Xie et al. 2019; torchattacks DIFGSM): decay 0; decay=1 is M-DI2-FGSM."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, diversity_prob=diversity_prob,
                       resize_rate=resize_rate, **kw)


def tifgsm(logits_fn, x, y, key=None, *, eps, decay: float = 0.0, kernel: str | None = "gaussian",
           len_kernel: int = 15, nsig: float = 3.0, diversity_prob: float = 0.5, resize_rate: float = 0.9,
           **kw) -> Array:
  """TI-DI-FGSM as torchattacks' TIFGSM (Dong et al. 2019): Gaussian 15x15 kernel, nsig 3, DI with
  p = 0.5, decay 0 (decay=1 is TI-DIM; diversity_prob=0 is TI-FGSM alone)."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, kernel=kernel, len_kernel=len_kernel,
                       nsig=nsig, diversity_prob=diversity_prob, resize_rate=resize_rate, **kw)


def nifgsm(logits_fn, x, y, key=None, *, eps, decay: float = 1.0, nesterov: bool = True, grad_norm: str = "mean",
           **kw) -> Array:
  """NI-FGSM (Lin et al. 2020; torchattacks NIFGSM): Nesterov look-ahead, decay 1, grad_norm 'mean' (the
  look-ahead depends on the buffer's scale; module docstring)."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, nesterov=nesterov, grad_norm=grad_norm, **kw)


def sinifgsm(logits_fn, x, y, key=None, *, eps, decay: float = 1.0, nesterov: bool = True, scales: int = 5,
             grad_norm: str = "mean", **kw) -> Array:
  """SI-NI-FGSM (Lin et al. 2020; torchattacks SINIFGSM): NI over m = 5 copies x / 2^i, grad_norm 'mean'."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, nesterov=nesterov, scales=scales,
                       grad_norm=grad_norm, **kw)


def vmifgsm(logits_fn, x, y, key=None, *, eps, decay: float = 1.0, n_neighbours: int = 5, beta: float = 1.5,
            **kw) -> Array:
  """VMI-FGSM (Wang & He 2021; torchattacks VMIFGSM): variance tuning, N = 5 neighbours, beta = 3/2."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, n_neighbours=n_neighbours, beta=beta, **kw)


def vnifgsm(logits_fn, x, y, key=None, *, eps, decay: float = 1.0, nesterov: bool = True, n_neighbours: int = 5,
            beta: float = 1.5, grad_norm: str = "mean", **kw) -> Array:
  """VNI-FGSM (Wang & He 2021; torchattacks VNIFGSM): VMI with NI's look-ahead (neighbours around x_t),
  grad_norm 'mean'."""
  return transfer_fgsm(logits_fn, x, y, key, eps=eps, decay=decay, nesterov=nesterov, n_neighbours=n_neighbours,
                       beta=beta, grad_norm=grad_norm, **kw)


def _entry(fn, summary):
  return AttackInfo(configured(fn), norms=("linf",), forwards_to=(transfer_fgsm,), summary=summary)


REGISTRY = {
    "transfer_fgsm": AttackInfo(configured(transfer_fgsm), norms=("linf",),
                                summary="MI-FGSM with the DI / TI / NI / SI / VMI transfer options combined"),
    "difgsm": _entry(difgsm, "DI2-FGSM: random resize-and-pad input diversity (Xie et al. 2019)"),
    "tifgsm": _entry(tifgsm, "TI-DI-FGSM: Gaussian-smoothed gradient + input diversity (Dong et al. 2019)"),
    "nifgsm": _entry(nifgsm, "NI-FGSM: Nesterov look-ahead momentum (Lin et al. 2020)"),
    "sinifgsm": _entry(sinifgsm, "SI-NI-FGSM: NI over scale copies x/2^i (Lin et al. 2020)"),
    "vmifgsm": _entry(vmifgsm, "VMI-FGSM: variance-tuned momentum (Wang & He 2021)"),
    "vnifgsm": _entry(vnifgsm, "VNI-FGSM: variance tuning with Nesterov look-ahead (Wang & He 2021)"),
}
