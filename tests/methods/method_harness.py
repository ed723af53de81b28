"""Shared pieces for the method tests: a logits-as-inputs context, a tiny Flax MLP, digits, a train loop."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrobust.methods.base import DatasetInfo, StepContext
from jaxrobust.train.state import create_train_state
from jaxrobust.train.step import make_train_step
from jaxrobust.types import ModelOutput


# Tiny programs: XLA compile time dominates, and the backend optimiser is most of it (about 3x on
# CPU). Numerics are unaffected at the tolerances the tests use.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def jit(f, **kw):
  return jax.jit(f, compiler_options=FAST_COMPILE, **kw)


def x64():
  """Context manager enabling float64 (``with x64(): ...``)."""
  return jax.enable_x64(True)


def identity_ctx(epoch: float = 0.0, num_classes: int = 10) -> StepContext:
  """A context whose 'model' is logits = params['w'] * x: the batch image *is* the logit matrix.

  Lets loss tests feed arbitrary clean/adversarial logits (batch['image'] = z_nat, x_adv = z_adv)
  while params still carry a gradient.
  """
  def eval_forward(params, batch_stats, x):
    return ModelOutput(params["w"] * x, x)

  def forward(params, batch_stats, x):
    return eval_forward(params, batch_stats, x), batch_stats

  step = jnp.asarray(0, jnp.int32)
  return StepContext(forward=forward, eval_forward=eval_forward, step=step,
                     epoch=jnp.asarray(epoch, jnp.float32), num_classes=num_classes)


def random_logits(seed: int, b: int = 16, k: int = 10, scale: float = 3.0):
  rng = np.random.default_rng(seed)
  return scale * rng.standard_normal((b, k)), rng.integers(0, k, size=b)


def logits_batch(z_nat, y, mask=None):
  batch = {"image": jnp.asarray(z_nat), "label": jnp.asarray(y, jnp.int32)}
  if mask is not None:
    batch["mask"] = jnp.asarray(mask)
  return batch


def call_loss(method, z_nat, z_adv, y, *, epoch=0.0, attack_aux=None, mask=None, w=1.0, grad=False):
  """method.loss on the identity context (jitted, epoch traced); returns (loss, metrics), or
  ((loss, metrics), d loss / d w) with grad=True."""
  dtype = jnp.asarray(z_nat).dtype
  k = np.shape(z_nat)[1]

  def run(w, z_nat, z_adv, y, epoch, attack_aux, mask):
    ctx = identity_ctx(0.0, k)._replace(epoch=epoch)
    value, aux = method.loss({"w": w}, {}, logits_batch(z_nat, y, mask), z_adv, attack_aux, (),
                             jax.random.key(0), ctx)
    return value, aux.metrics

  fn = jax.value_and_grad(run, has_aux=True) if grad else run
  return jit(fn)(jnp.asarray(w, dtype), jnp.asarray(z_nat), jnp.asarray(z_adv),
                  jnp.asarray(y, jnp.int32), jnp.asarray(epoch, jnp.float32), attack_aux,
                  None if mask is None else jnp.asarray(mask))


class CosineHeadFallback(nn.Module):
  """Only used if the models package has no CosineHead: cos(theta_j) + b_j."""
  num_classes: int

  @nn.compact
  def __call__(self, f):
    k = self.param("cosine_kernel", nn.initializers.normal(1.0), (f.shape[-1], self.num_classes))
    b = self.param("bias", nn.initializers.zeros_init(), (self.num_classes,))
    k = k * jax.lax.stop_gradient(jax.lax.rsqrt(jnp.sum(k * k, axis=0, keepdims=True)))
    f = f * jax.lax.rsqrt(jnp.sum(f * f, axis=-1, keepdims=True) + 1e-24)
    return f @ k + b


def _cosine_head(num_classes):
  try:
    from jaxrobust.models.heads import CosineHead
    return CosineHead(num_classes, name="head")
  except ImportError:
    return CosineHeadFallback(num_classes, name="head")


class TinyMLP(nn.Module):
  """8x8x1 digits -> Dense(32) -> BatchNorm -> relu -> head; follows the model contract."""
  num_classes: int = 10
  head: str = "linear"  # 'linear' | 'cosine' | 'single_logit'

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    h = nn.Dense(32, name="dense")(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(h)
    f = nn.relu(h)
    if self.head == "cosine":
      logits = _cosine_head(self.num_classes)(f)
    elif self.head == "single_logit":
      logits = nn.Dense(1, name="head")(f)
    else:
      logits = nn.Dense(self.num_classes, name="head")(f)
    return ModelOutput(logits, f) if return_features else logits


@functools.lru_cache(maxsize=None)
def digits(n: int = 128, binary: bool = False):
  """A fixed batch of sklearn digits, (n, 8, 8, 1) in [0, 1]; binary: label = 1[digit >= 5]."""
  from sklearn.datasets import load_digits
  d = load_digits()
  x = (d.images[:n] / 16.0).astype(np.float32)[..., None]
  y = d.target[:n].astype(np.int32)
  if binary:
    y = (y >= 5).astype(np.int32)
  return x, y


def run_training(method, *, head="linear", n_steps=20, n=128, steps_per_epoch=1000, lr=1e-2,
                 start_step=0, seed=0, model=None, init=None):
  """Trains TinyMLP (or ``model``, its variables from ``init(model, x)``) on one fixed digits batch.
  Returns (state0, state, metrics list, jitted step)."""
  num_classes = 10
  x, y = digits(n, binary=head == "single_logit")
  if model is None:
    model = TinyMLP(num_classes=num_classes, head=head)
    variables = model.init(jax.random.key(seed), jnp.asarray(x[:2]))
  else:
    variables = init(model, x)
  tx = optax.adam(lr)
  info = DatasetInfo(num_examples=n, num_classes=num_classes, labels=y)
  state = create_train_state(variables, tx, jax.random.key(seed + 1), method.init_state(info))
  state = state.replace(step=jnp.asarray(start_step, jnp.int32))
  step_fn = jit(make_train_step(model, method, tx, steps_per_epoch=steps_per_epoch,
                                    num_classes=num_classes))
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y), "index": jnp.arange(n, dtype=jnp.int32)}
  state0, metrics = state, []
  for _ in range(n_steps):
    state, m = step_fn(state, batch)
    metrics.append(jax.device_get(m))
  return state0, state, metrics, step_fn


def assert_same_structure(state0, state):
  """Shapes and dtypes of every leaf of the train state are kept by the step."""
  l0, t0 = jax.tree_util.tree_flatten(state0)
  l1, t1 = jax.tree_util.tree_flatten(state)
  assert t0 == t1
  for a, b in zip(l0, l1):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)


def check_training(method, **kw):
  """The common train-step property: runs, keeps state structure, finite, loss decreases."""
  state0, state, metrics, step_fn = run_training(method, **kw)
  assert_same_structure(state0, state)
  losses = np.array([float(m["loss"]) for m in metrics])
  assert np.all(np.isfinite(losses)), losses
  assert np.all(np.isfinite([float(m["grad_norm"]) for m in metrics]))
  for key in ("loss", "acc", "adv_acc"):
    assert key in metrics[-1], sorted(metrics[-1])
  assert losses[-3:].mean() < losses[:3].mean(), losses
  assert step_fn._cache_size() == 1
  return state0, state, metrics
