"""Does bf16 make XLA:CPU convolutions faster? (Would an opt-in bf16 mode pay off on CPU?)

    python -m benchmarks.bf16_probe            # current XLA flags, plus torch
    python -m benchmarks.bf16_probe --sweep    # also XLA's oneDNN/YNNPACK options

Times, on this machine, the forward of two 3x3 convolutions the benchmark models spend their
time in (SmallCNN's 32->32 on 128x26x26, PreAct ResNet-18's first stage 64->64 on 128x32x32,
'SAME' padding) and a 4096x1024x1024 matmul, in float32 and bfloat16 (float32 accumulation),
under JAX and under PyTorch (oneDNN), and (JAX only) the 64->64 convolution written as an im2col
matmul and as nine shifted-tap matmuls. ``--sweep`` re-runs the JAX half in fresh processes with
XLA's other CPU paths switched on (oneDNN dot fusions and custom calls, YNNPACK fusions), since
XLA fixes its flags when the backend starts. Medians of 10 calls after 2 warm-up calls, ms.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

from benchmarks.timing import median_ms

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository root, where `-m benchmarks...` resolves
CONVS = [(128, 26, 32, 32), (128, 32, 64, 64)]
MATMUL = (4096, 1024, 1024)
SWEEP = {
    "jaxrobust default (YNNPACK fusions off)": None,
    "XLA default (YNNPACK fusions on)": "JAXROBUST_XLA_FLAGS=0",
    "YNNPACK dots only": "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
    "oneDNN (--xla_cpu_use_onednn)": "--xla_cpu_use_onednn=true",
    "oneDNN custom calls": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "oneDNN fusions (individual dot/conv)":
        "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot",
}


def _median_ms(f):
  return median_ms(f, n=10, warmup=2)


def jax_times() -> dict:
  import jaxrobust  # noqa: F401  (the library's XLA:CPU flags, unless overridden)
  import jax
  import jax.numpy as jnp
  out = {}
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=jnp.float32))
  matmul = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  for n, h, c, o in CONVS:
    x = jax.random.normal(jax.random.key(0), (n, h, h, c))
    w = jax.random.normal(jax.random.key(1), (3, 3, c, o))
    for dt in ("float32", "bfloat16"):
      xx, ww = x.astype(dt), w.astype(dt)
      out[f"conv {n}x{h}x{h} {c}->{o} {dt}"] = _median_ms(lambda: conv(xx, ww).block_until_ready())
  m, k, n = MATMUL
  for dt in ("float32", "bfloat16"):
    a, b = jnp.ones((m, k), dt), jnp.ones((k, n), dt)
    out[f"matmul {m}x{k}x{n} {dt}"] = _median_ms(lambda: matmul(a, b).block_until_ready())
  # The ResNet first-stage convolution written as matmuls, the only way to reach a library's fast
  # bf16 dot (YNNPACK's, with the "YNNPACK dots only" flags): im2col patches, or nine shifted taps.
  n_, h, c, o = CONVS[1]
  x = jax.random.normal(jax.random.key(0), (n_, h, h, c))
  w = jax.random.normal(jax.random.key(1), (3, 3, c, o))

  def shifted(x):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [xp[:, i:i + h, j:j + h, :] for i in range(3) for j in range(3)]

  im2col = jax.jit(lambda x, w: jnp.einsum("bhwk,ko->bhwo", jnp.concatenate(shifted(x), -1), w.reshape(9 * c, o),
                                           preferred_element_type=jnp.float32))
  taps = jax.jit(lambda x, w: sum(jnp.einsum("bhwc,co->bhwo", s, w[t // 3, t % 3], preferred_element_type=jnp.float32)
                                  for t, s in enumerate(shifted(x))))
  for dt in ("float32", "bfloat16"):
    xx, ww = x.astype(dt), w.astype(dt)
    for name, f in (("im2col matmul", im2col), ("nine-tap matmuls", taps)):
      out[f"conv {n_}x{h}x{h} {c}->{o} as {name} {dt}"] = _median_ms(lambda: f(xx, ww).block_until_ready())
  return out


def torch_times() -> dict:
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  out = {}
  for n, h, c, o in CONVS:
    x = torch.randn(n, c, h, h)
    conv = torch.nn.Conv2d(c, o, 3, padding=1, bias=False)
    for dt, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
      cc, xx = conv.to(dt), x.to(dt)
      with torch.no_grad():
        out[f"conv {n}x{h}x{h} {c}->{o} {name}"] = _median_ms(lambda: cc(xx))
  m, k, n = MATMUL
  for dt, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
    a, b = torch.ones(m, k, dtype=dt), torch.ones(k, n, dtype=dt)
    out[f"matmul {m}x{k}x{n} {name}"] = _median_ms(lambda: a @ b)
  return out


def _child_env(setting):
  env = dict(os.environ)
  if setting is None:
    return env
  if setting.startswith("JAXROBUST_XLA_FLAGS="):
    env["JAXROBUST_XLA_FLAGS"] = setting.split("=", 1)[1]
  else:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + setting).strip()
  return env


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sweep", action="store_true", help="also time JAX under XLA's other CPU paths")
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--jax-only-child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.jax_only_child:
    print(json.dumps(jax_times()))
    return
  columns = {}
  settings = SWEEP if args.sweep else {"jaxrobust default (YNNPACK fusions off)": None}
  for label, setting in settings.items():
    res = subprocess.run([sys.executable, "-m", "benchmarks.bf16_probe", "--jax-only-child"], env=_child_env(setting),
                         capture_output=True, text=True, check=False, cwd=ROOT)
    if res.returncode != 0:
      columns[f"jax: {label}"] = {"error": res.stderr[-300:]}
      continue
    columns[f"jax: {label}"] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"[bf16_probe] {label}: {columns[f'jax: {label}']}", file=sys.stderr, flush=True)
  if not args.no_torch:
    columns["torch (oneDNN)"] = torch_times()
  rows = list(next(c for c in columns.values() if "error" not in c))
  print("| ms | " + " | ".join(columns) + " |")
  print("|---|" + "---:|" * len(columns))
  for r in rows:
    print(f"| {r} | " + " | ".join(str(c.get(r, c.get("error", "")))[:60] for c in columns.values()) + " |")


if __name__ == "__main__":
  main()
