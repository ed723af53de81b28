"""2-D convolution whose input gradient stays fast inside XLA loops, and a reshape max-pool.

``conv2d(x, w)`` computes exactly ``lax.conv_general_dilated`` (NHWC input, HWIO kernel), but
its input gradient is written out by hand:

    dL/dx = conv( dilate_s(g), flip_hw(w)^T_io , padding = (k - 1 - p_lo, n + k - 1 - ((m-1)s + 1) - (k - 1 - p_lo)) )

Why: JAX's own transpose rule expresses the flipped kernel through the convolution's dimension
labels (``01oi``) instead of moving data. Outside a loop XLA constant-folds that into a
canonical kernel, but inside a ``while`` body (``lax.fori_loop``, ``lax.scan``, ``lax.map``)
XLA:CPU keeps the ``01oi`` form and runs the convolution on a slow generic path: a PGD step in a
``fori_loop`` measured 2-6x slower than the same step unrolled. Materialising the transposed
kernel behind ``optimization_barrier`` (so transpose folding cannot turn it back into dimension
labels) gives the loop the same fast kernel as straight-line code. The kernel gradient keeps
JAX's rule (it runs once per training step, outside attack loops).

``max_pool_2x2``-style pooling (window == stride, no padding) is written as a reshape + max:
XLA:CPU lowers the gradient of ``reduce_window`` max (select-and-scatter) about 8x slower.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxrobust.types import Array

_DN = ("NHWC", "HWIO", "NHWC")
Padding = Tuple[Tuple[int, int], Tuple[int, int]]


def _conv(x: Array, w: Array, strides: Tuple[int, int], padding: Padding) -> Array:
  return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


def _input_grad_padding(n: int, k: int, s: int, m: int, lo: int) -> Tuple[int, int]:
  """Padding of the transposed convolution (same formula as JAX's conv lhs VJP)."""
  before = k - lo - 1
  after = n + k - 1 - ((m - 1) * s + 1) - before
  return before, after


def _make_core(strides: Tuple[int, int], padding: Padding) -> Callable[[Array, Array], Array]:
  """conv for fixed (strides, padding) with the hand-written input gradient."""

  @jax.custom_vjp
  def core(x, w):
    return _conv(x, w, strides, padding)

  def fwd(x, w):
    return _conv(x, w, strides, padding), (x, w)

  def bwd(res, g):
    x, w = res
    kh, kw = w.shape[0], w.shape[1]
    pads = tuple(
        _input_grad_padding(x.shape[1 + d], (kh, kw)[d], strides[d], g.shape[1 + d], padding[d][0])
        for d in range(2))
    # flip spatially and swap in/out channels, as data (see the module docstring)
    w_t = jax.lax.optimization_barrier(jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2)))
    gx = jax.lax.conv_general_dilated(g, w_t, (1, 1), pads, lhs_dilation=strides, dimension_numbers=_DN)
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, strides, padding), w)
    return gx.astype(x.dtype), kernel_vjp(g)[0]

  core.defvjp(fwd, bwd)
  return core


_CORES: dict = {}


def conv2d(x: Array, w: Array, strides: Sequence[int] = (1, 1),
           padding: Padding = ((0, 0), (0, 0))) -> Array:
  """(B, H, W, Cin) x (kh, kw, Cin, Cout) -> (B, H', W', Cout); same values as lax.conv_general_dilated."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  key = (strides, padding)
  if key not in _CORES:
    _CORES[key] = _make_core(strides, padding)
  return _CORES[key](x, w)


class Conv(nn.Module):
  """Drop-in for ``nn.Conv`` (same 'kernel' (kh, kw, in, out) and 'bias' parameters) using conv2d."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = ((0, 0), (0, 0))
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, self.strides, self.padding)
    if bias is not None:
      y = y + bias
    return y


def max_pool(x: Array, window: int, stride: int, padding: int = 0) -> Array:
  """PyTorch MaxPool2d on NHWC (padding counts as -inf). window == stride without padding uses a
  reshape + max (floor mode: trailing rows/columns that do not fill a window are dropped, as in torch)."""
  if window == stride and padding == 0:
    b, h, w, c = x.shape
    ho, wo = h // window, w // window
    x = x[:, :ho * window, :wo * window, :]
    return jnp.max(x.reshape(b, ho, window, wo, window, c), axis=(2, 4))
  return nn.max_pool(x, (window, window), strides=(stride, stride),
                     padding=((padding, padding), (padding, padding)))
