"""Parameter-gradient probe behind BENCHMARKS.md section 1 (why the TRADES ResNet-18 step trails eager).

    python -m benchmarks.param_grad_probe [batch]

1. PreAct ResNet-18, train mode: the gradient w.r.t. the parameters of one CE forward (the PGD-AT
   update) and of TRADES's two forwards (CE + 6 KL), JAX (``train.step.make_forwards``) against
   the same network ported to torch; interleaved medians of 5 after warm-up.
2. Single 3x3 convolutions at ResNet-18's four stage shapes: forward, kernel gradient and input
   gradient, ``models.conv.conv2d`` against ``torch.nn.functional.conv2d`` / ``torch.nn.grad``; for
   the first stage also the kernel gradient written as nine shifted GEMMs (the alternative tried).
Needs the [torch] extra.
"""
import sys
import time

import jaxrobust  # noqa: F401  (XLA:CPU flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import torch_models as tm
from benchmarks.timing import median_ms
from jaxrobust import losses as L
from jaxrobust.models import get_model, init_model
from jaxrobust.models.conv import conv2d
from jaxrobust.train.step import make_forwards

torch.set_num_threads(2)


def med(f, n=7):
  return median_ms(f, n=n, warmup=1)


def train_grads(b):
  module = get_model("preact_resnet18", 10)
  v = init_model(module, jax.random.PRNGKey(0), (1, 32, 32, 3))
  params, bs = v["params"], v.get("batch_stats", {})
  fwd, _ = make_forwards(module)
  x = jax.random.uniform(jax.random.PRNGKey(1), (b, 32, 32, 3))
  xa = jnp.clip(x + 0.03, 0, 1)
  y = jnp.zeros((b,), jnp.int32)

  def at(p):
    o, nb = fwd(p, bs, xa)
    return jnp.mean(L.cross_entropy(o.logits, y)), nb

  def trades(p):
    o1, nb = fwd(p, bs, x)
    o2, nb = fwd(p, nb, xa)
    return jnp.mean(L.cross_entropy(o1.logits, y)) + 6.0 * jnp.mean(L.kl_divergence(o2.logits, None, o1.logits)), nb

  g_at, g_tr = jax.jit(jax.grad(at, has_aux=True)), jax.jit(jax.grad(trades, has_aux=True))
  net = tm.port_flax_to_torch(v, tm.build_torch_model("preact_resnet18", (32, 32, 3), 10)).train()
  xt, xat = tm.to_torch_images(np.asarray(x)), tm.to_torch_images(np.asarray(xa))
  yt = torch.zeros(b, dtype=torch.long)
  F = torch.nn.functional

  def t_at():
    net.zero_grad()
    F.cross_entropy(net(xat), yt).backward()

  def t_tr():
    net.zero_grad()
    lo = net(xt)
    (F.cross_entropy(lo, yt) + 6.0 / b * F.kl_div(F.log_softmax(net(xat), 1), F.softmax(lo, 1),
                                                   reduction="sum")).backward()

  fs = {"jax_at": lambda: jax.block_until_ready(g_at(params)),
        "jax_trades": lambda: jax.block_until_ready(g_tr(params)), "torch_at": t_at, "torch_trades": t_tr}
  for f in fs.values():
    f()
  ts = {k: [] for k in fs}
  for _ in range(5):
    for k, f in fs.items():
      t = time.perf_counter()
      f()
      ts[k].append(time.perf_counter() - t)
  print("param grads, s:", b, {k: round(float(np.median(v)), 3) for k, v in ts.items()}, flush=True)


def conv_layers(b):
  k = jax.random.key(0)
  pad = ((1, 1), (1, 1))
  for (h, c, co) in [(32, 64, 64), (16, 128, 128), (8, 256, 256), (4, 512, 512)]:
    x = jax.random.normal(k, (b, h, h, c))
    w = jax.random.normal(k, (3, 3, c, co)) * 0.05
    g = jax.random.normal(k, (b, h, h, co))
    kg = jax.jit(lambda x, w, g: jax.vjp(lambda w_: conv2d(x, w_, padding=pad), w)[1](g)[0])
    ig = jax.jit(lambda x, w, g: jax.vjp(lambda x_: conv2d(x_, w, padding=pad), x)[1](g)[0])
    fw = jax.jit(lambda x, w: conv2d(x, w, padding=pad))
    xt, wt, gt = torch.randn(b, c, h, h), torch.randn(co, c, 3, 3) * 0.05, torch.randn(b, co, h, h)
    with torch.no_grad():
      r = dict(jax_fwd=med(lambda: jax.block_until_ready(fw(x, w))),
               torch_fwd=med(lambda: torch.nn.functional.conv2d(xt, wt, padding=1)),
               jax_kgrad=med(lambda: jax.block_until_ready(kg(x, w, g))),
               torch_kgrad=med(lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, gt, padding=1)),
               jax_igrad=med(lambda: jax.block_until_ready(ig(x, w, g))),
               torch_igrad=med(lambda: torch.nn.grad.conv2d_input(xt.shape, wt, gt, padding=1)))
    if h == 32:  # the alternative tried for the slow first-stage kernel gradient: nine shifted GEMMs
      nine = jax.jit(lambda x, g: _nine_gemm_kernel_grad(x, g))
      r["jax_kgrad_nine_gemms"] = med(lambda: jax.block_until_ready(nine(x, g)))
    print("conv ms:", (b, h, c, co), r, flush=True)


def _nine_gemm_kernel_grad(x, g):
  """dW[i, j] = sum_{b,h,w} pad(x)[b, h+i, w+j, :]^T g[b, h, w, :] for a 3x3, padding-1 convolution."""
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = g.shape[1], g.shape[2]
  return jnp.stack([jnp.stack([jnp.einsum("bhwc,bhwo->co", xp[:, i:i + h, j:j + w, :], g) for j in range(3)])
                    for i in range(3)])


if __name__ == "__main__":
  batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
  train_grads(batch)
  conv_layers(batch)
