"""Where the PreAct ResNet-18 rows lose to PyTorch on CPU: cost per row against batch, and kernel-gradient forms.

    python -m benchmarks.small_batch_probe [--batches 24 48 128] [--kernel-batch 128]

1. PreAct ResNet-18 (CIFAR-10 shapes, random weights, eval mode), per row: the forward (Square's query) and the
   forward + input gradient of one logit (an APGD / FAB step), JAX (the library's ``make_apply``) against the
   same network ported to torch (``torch.autograd.grad`` w.r.t. the input only, as AutoAttack does). AutoAttack
   runs its later stages on the few points still robust, so these small batches are what it sees.
2. The kernel gradient of one 3x3 convolution at the four stage shapes of ResNet-18 (what a training step adds
   over an attack step): XLA's own transpose rule, the batch split in two halves, an im2col matmul, and the
   convolution written with batch as the contracted feature axis (``explicit``, the same arithmetic); against
   ``torch.nn.grad.conv2d_weight``. GFLOP/s counts 2 x N x H x W x Cin x Cout x 9.

Best of 5 after a warm-up; the two frameworks run in separate blocks (torch's OpenMP threads spin after each op).
Needs the [torch] extra.
"""

from __future__ import annotations

import argparse
import sys
import time

import jaxrobust  # noqa: F401  (XLA:CPU flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np

_DN = ("NHWC", "HWIO", "NHWC")
_PAD = ((1, 1), (1, 1))
STAGES = ((32, 64, 64), (16, 128, 128), (8, 256, 256), (4, 512, 512))


def best_s(fn, n: int = 5) -> float:
  fn()
  times = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), _PAD, dimension_numbers=_DN)


def kernel_grad_xla(x, w, g):
  return jax.vjp(lambda k: _conv(x, k), w)[1](g)[0]


def kernel_grad_split(x, w, g):
  return sum(kernel_grad_xla(a, w, b) for a, b in zip(jnp.split(x, 2), jnp.split(g, 2)))


def kernel_grad_im2col(x, w, g):
  n, h, wd, ci = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)], axis=-1)
  return (patches.reshape(n * h * wd, 9 * ci).T @ g.reshape(n * h * wd, -1)).reshape(3, 3, ci, -1)


def kernel_grad_explicit(x, w, g):
  # (Cin, H, W, N) "images" against (H, W, N, Cout) "kernels": batch is the contracted feature axis.
  out = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)))
  return jnp.transpose(out, (1, 2, 0, 3))


KERNEL_GRADS = {"xla": kernel_grad_xla, "split2": kernel_grad_split, "im2col": kernel_grad_im2col,
                "explicit": kernel_grad_explicit}


def per_row(batches) -> list[dict]:
  import torch
  from benchmarks import torch_models as tm
  from jaxrobust.models import get_model, init_model, make_apply
  module = get_model("preact_resnet18", 10)
  variables = init_model(module, jax.random.PRNGKey(0), (1, 32, 32, 3))
  apply = make_apply(module)
  fwd = jax.jit(apply)
  grad = jax.jit(jax.grad(lambda v, z: jnp.sum(apply(v, z)[:, 0]), argnums=1))
  net = tm.port_flax_to_torch(variables, tm.build_torch_model("preact_resnet18", (32, 32, 3), 10,
                                                              mean=module.mean, std=module.std)).eval()
  rows = []
  for b in batches:
    x = np.random.default_rng(b).random((b, 32, 32, 3), np.float32)
    xj, xt = jnp.asarray(x), tm.to_torch_images(x)
    jf = best_s(lambda: fwd(variables, xj).block_until_ready())
    jg = best_s(lambda: grad(variables, xj).block_until_ready())
    with torch.no_grad():
      tf = best_s(lambda: net(xt))

    def torch_grad():
      z = xt.clone().requires_grad_(True)
      torch.autograd.grad(net(z)[:, 0].sum(), z)
    tg = best_s(torch_grad)
    rows.append({"batch": b, "fwd_ms_per_row": {"jax": 1e3 * jf / b, "torch": 1e3 * tf / b},
                 "fwd_grad_ms_per_row": {"jax": 1e3 * jg / b, "torch": 1e3 * tg / b}})
    print(f"batch {b:4d}: forward ms/row jax {1e3 * jf / b:6.2f} torch {1e3 * tf / b:6.2f} (jax x{tf / jf:.2f}) | "
          f"forward + input grad ms/row jax {1e3 * jg / b:6.2f} torch {1e3 * tg / b:6.2f} (jax x{tg / jg:.2f})",
          flush=True)
  return rows


def kernel_grads(n: int) -> list[dict]:
  import torch
  rows = []
  for hw, ci, co in STAGES:
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (n, hw, hw, ci))
    g = jax.random.normal(keys[1], (n, hw, hw, co))
    w = jax.random.normal(keys[2], (3, 3, ci, co))
    gflop = 2 * n * hw * hw * ci * co * 9 / 1e9
    ref = jax.jit(kernel_grad_xla)(x, w, g)
    row = {"shape": f"{n}x{hw}x{hw} {ci}->{co}", "ms": {}, "max_rel_diff": {}}
    for name, f in KERNEL_GRADS.items():
      jf = jax.jit(f)
      row["max_rel_diff"][name] = float(jnp.max(jnp.abs(jf(x, w, g) - ref)) / jnp.max(jnp.abs(ref)))
      row["ms"][name] = 1e3 * best_s(lambda: jf(x, w, g).block_until_ready())
    xt, gt = torch.randn(n, ci, hw, hw), torch.randn(n, co, hw, hw)
    row["ms"]["torch"] = 1e3 * best_s(lambda: torch.nn.grad.conv2d_weight(xt, (co, ci, 3, 3), gt, padding=1))
    row["gflops"] = {k: gflop / v * 1e3 for k, v in row["ms"].items()}
    rows.append(row)
    print(row["shape"] + ": " + ", ".join(f"{k} {v:.1f} ms ({row['gflops'][k]:.0f} GFLOP/s)"
                                           for k, v in row["ms"].items())
          + "; max rel diff to xla " + ", ".join(f"{k} {v:.0e}" for k, v in row["max_rel_diff"].items()),
          flush=True)
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batches", type=int, nargs="+", default=[24, 48, 128])
  p.add_argument("--kernel-batch", type=int, default=128)
  args = p.parse_args(argv)
  import torch
  torch.set_num_threads(2)
  per_row(args.batches)
  kernel_grads(args.kernel_batch)
  return 0


if __name__ == "__main__":
  sys.exit(main())
