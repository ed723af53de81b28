"""Single-layer XLA:CPU probe behind BENCHMARKS.md section 1 (convolution and max-pool timings).

    python -m benchmarks.conv_layer_probe                          # jaxrobust default flags
    JAXROBUST_XLA_FLAGS=0 python -m benchmarks.conv_layer_probe    # XLA default (YNNPACK)

Prints, per SmallCNN convolution shape at batch 128, forward ms and forward+input-gradient ms,
and the reduce_window vs reshape max-pool. Medians of 7 calls after one warm-up.
"""
import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)
import os, sys, time
import numpy as np, jax, jax.numpy as jnp
B=128
def timeit(f, *a, n=7):
  t=time.perf_counter(); c = jax.jit(f).lower(*a).compile(); ct=time.perf_counter()-t
  jax.block_until_ready(c(*a))
  ts=[]
  for _ in range(n):
    t=time.perf_counter(); jax.block_until_ready(c(*a)); ts.append(time.perf_counter()-t)
  return round(float(np.median(ts))*1000,2)
k=jax.random.key(0)
dn=('NHWC','HWIO','NHWC')
def conv(x,w): return jax.lax.conv_general_dilated(x,w,(1,1),'VALID',dimension_numbers=dn)
shapes=[((B,28,28,1),(3,3,1,32)),((B,26,26,32),(3,3,32,32)),((B,12,12,32),(3,3,32,64)),((B,10,10,64),(3,3,64,64))]
tot_f=tot_b=0
for xs,ws in shapes:
  x=jax.random.normal(k,xs); w=jax.random.normal(k,ws)*0.1
  f=lambda x: conv(x,w)
  tf=timeit(f,x)
  gb=lambda x: jax.grad(lambda x: jnp.sum(conv(x,w)**2))(x)
  tb=timeit(gb,x)
  print(xs,ws,"fwd ms",tf,"fwd+bwd_in ms",tb, flush=True)
x=jax.random.normal(k,(B,24,24,32))
import flax.linen as nn
mp1=lambda x: nn.max_pool(x,(2,2),(2,2))
mp2=lambda x: x.reshape(B,12,2,12,2,32).max(axis=(2,4))
for n,mp in [("reduce_window",mp1),("reshape",mp2)]:
  print(n,"fwd",timeit(mp,x),"fwd+bwd",timeit(lambda x: jax.grad(lambda x: jnp.sum(mp(x)**2))(x),x), flush=True)
