"""The transfer family (DI, TI, NI, SI-NI, VMI, VNI): validity, reductions to MI-FGSM / NI, per-example keys,
compile-once, the DI transform against torch and the deterministic members against torchattacks."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from attack_testkit import (assert_valid, digits_model, images, labels, mlp_apply, mlp_params,  # noqa: E402
                            to_torch)

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks import transfer_family as tf  # noqa: E402
from jaxrobust.attacks.mim import mim  # noqa: E402
from jaxrobust.attacks.per_example import example_keys  # noqa: E402
from jaxrobust.attacks.transfer import transfer_report  # noqa: E402

B, K, T = 8, 5, 4
SHAPE = (20, 20, 1)  # DI with resize_rate 0.9 draws sizes 18 or 19, offsets 0..2
X = images(0, B, SHAPE)
Y = labels(0, B, K)
P = mlp_params(1, int(np.prod(SHAPE)), 16, K)
KEY = jax.random.key(0)
NAMES = ("difgsm", "tifgsm", "nifgsm", "sinifgsm", "vmifgsm", "vnifgsm")


def f(v):
  return mlp_apply(P, v)


@jax.jit
def _run_mim(x, y):
  return mim(f, x, y, eps=0.1, step_size=0.03, steps=T, decay=1.0)


def run(name, x=X, y=Y, key=KEY, **config):
  config = dict(dict(eps=0.1, step_size=0.03, steps=T), **config)
  return jax.jit(lambda x, y, k: registry.get_attack(name, **config)(f, x, y, k))(x, y, key)


@pytest.mark.parametrize("name", NAMES)
def test_in_ball_and_box_and_registered(name):
  info = registry.attack_info(name)
  assert info.norms == ("linf",) and info.jittable
  for eps in (0.0, 0.05):
    a = run(name, eps=eps, step_size=0.02)
    assert_valid(a, X, eps)
    if eps == 0:
      np.testing.assert_array_equal(a, X)
  eps = jnp.linspace(0.0, 0.2, B)  # per-example eps
  assert_valid(run(name, eps=eps, step_size=eps / 2), X, eps)


def test_di_without_diversity_is_mim_exactly():
  ref = _run_mim(X, Y)
  np.testing.assert_array_equal(run("difgsm", decay=1.0, diversity_prob=0.0), ref)
  # the transform itself is the identity when its coin never comes up (a traced p = 0 keeps it in the program)
  out = jax.jit(lambda p: tf.input_diversity(example_keys(KEY, B), X, p, 0.9))(jnp.float32(0.0))
  np.testing.assert_array_equal(out, X)


def test_ti_with_a_1x1_kernel_is_mim_exactly():
  assert tf.smoothing_kernel("gaussian", 1, 3.0).tolist() == [[1.0]]
  np.testing.assert_array_equal(run("tifgsm", decay=1.0, len_kernel=1, diversity_prob=0.0), _run_mim(X, Y))
  np.testing.assert_array_equal(run("tifgsm", decay=1.0, kernel=None, diversity_prob=0.0), _run_mim(X, Y))
  for name in tf.KERNELS:
    k = tf.smoothing_kernel(name, 7, 3.0)
    assert k.shape == (7, 7) and abs(k.sum() - 1) < 1e-6 and np.allclose(k, k.T) and np.allclose(k, k[::-1])


def test_si_with_one_scale_is_ni_exactly():
  np.testing.assert_array_equal(run("sinifgsm", scales=1), run("nifgsm"))
  assert not np.array_equal(run("sinifgsm", scales=3), run("nifgsm"))


def test_ni_with_zero_decay_is_bim_and_differs_from_mim():
  np.testing.assert_array_equal(run("nifgsm", decay=0.0), run("transfer_fgsm", decay=0.0))
  assert not np.array_equal(run("nifgsm"), _run_mim(X, Y))


def test_vmi_reductions_to_mim():
  """N = 0: no variance term, MI-FGSM exactly (torchattacks returns NaN: 0 / N). beta = 0 with N = 1: the
  neighbour is x_t itself, v = g - g = 0, MI-FGSM exactly. beta = 0 with N = 5: v is a rounding error of
  the mean of 5 equal gradients, so only almost every coordinate agrees."""
  ref = np.asarray(_run_mim(X, Y))
  np.testing.assert_array_equal(run("vmifgsm", n_neighbours=0), ref)
  np.testing.assert_array_equal(run("vmifgsm", n_neighbours=1, beta=0.0), ref)
  assert np.mean(np.asarray(run("vmifgsm", n_neighbours=5, beta=0.0)) == ref) > 0.99
  np.testing.assert_array_equal(run("vnifgsm", n_neighbours=0), run("nifgsm"))
  assert not np.array_equal(run("vmifgsm"), ref)


@pytest.mark.parametrize("name,extra", [("difgsm", {}), ("tifgsm", dict(len_kernel=5)), ("vmifgsm", {}),
                                        ("vnifgsm", dict(diversity_prob=0.5)), ("sinifgsm", dict(diversity_prob=0.7, scales=2))])
def test_per_example_keys_full_batch_equals_halves(name, extra):
  keys = example_keys(KEY, B)
  full = run(name, key=KEY, **extra)
  halves = np.concatenate([run(name, X[:4], Y[:4], keys[:4], **extra), run(name, X[4:], Y[4:], keys[4:], **extra)])
  np.testing.assert_allclose(full, halves, atol=1e-6)
  assert not np.array_equal(full, run(name, key=jax.random.key(1), **extra))  # the key matters


def test_diversity_draws_follow_torchattacks_ranges():
  keys = example_keys(KEY, 4000)
  size, offset, out_hw = tf.diversity_draws(keys, (32, 32), 0.5, 0.9)
  size, offset = np.asarray(size), np.asarray(offset)
  assert out_hw == (32, 32)
  applied = size[:, 0] < 32
  assert abs(applied.mean() - 0.5) < 0.03
  assert set(size[applied, 0]) == {28, 29, 30, 31} and np.all(size[:, 0] == size[:, 1])
  rem = 32 - size[applied]
  assert np.all((offset[applied] >= 0) & (offset[applied] < rem)) and np.all(offset[~applied] == 0)
  assert set(offset[applied, 0][size[applied, 0] == 28]) == {0, 1, 2, 3}
  _, _, out_hw = tf.diversity_draws(keys[:2], (299, 299), 1.0, 330 / 299)  # the paper's enlarging version
  assert out_hw == (330, 330)


def test_compile_once_and_traced_model_calls_do_not_grow_with_loops():
  """Steps, SI copies and VMI neighbours are rolled loops: the model is traced a fixed number of times, and
  new data / keys reuse the program."""
  def traced_calls(name, **config):
    calls = []

    def g(v):
      if isinstance(v, jax.core.Tracer):
        calls.append(v.shape)
      return f(v)
    attack = registry.get_attack(name, eps=0.1, **config)
    fn = jax.jit(lambda x, y, k: attack(g, x, y, k))
    fn(X, Y, KEY).block_until_ready()
    n = len(calls)
    fn(X + 0.0 * X[::-1], labels(3, B, K), jax.random.key(7)).block_until_ready()
    assert fn._cache_size() == 1 and len(calls) == n
    return n

  for name in NAMES:
    small = traced_calls(name, steps=2, **({"scales": 2} if name == "sinifgsm" else {}),
                         **({"n_neighbours": 2} if name.startswith("v") else {}))
    large = traced_calls(name, steps=6, **({"scales": 5} if name == "sinifgsm" else {}),
                         **({"n_neighbours": 6} if name.startswith("v") else {}))
    assert small == large <= 4, (name, small, large)


def test_bad_options_and_transfer_names():
  with pytest.raises(ValueError, match="diversity_prob"):
    run("difgsm", diversity_prob=1.5)
  with pytest.raises(ValueError, match="kernel"):
    run("tifgsm", kernel="box")
  with pytest.raises(ValueError, match="scales"):
    run("sinifgsm", scales=0)
  with pytest.raises(ValueError, match="NHWC"):
    tf.difgsm(f, X.reshape(B, -1), Y, KEY, eps=0.1)
  with pytest.raises(ValueError, match="nesterov"):
    registry.get_attack("difgsm", eps=0.1, nesterof=True)
  target = lambda v: mlp_apply(mlp_params(2, int(np.prod(SHAPE)), 16, K), v)
  for name in NAMES:
    rep = transfer_report(f, {"other": target}, X, Y, KEY, name, {"eps": 0.1, "steps": 3})
    assert rep["source_adv"] <= rep["source_clean"] and set(rep["target_adv"]) == {"other"}


@pytest.mark.torch
def test_resize_and_pad_matches_torch_interpolate():
  torch = pytest.importorskip("torch", reason="torch not installed")
  F = torch.nn.functional
  x = images(3, 3, (32, 32, 2), extremes=False)
  size = jnp.array([[28, 28], [31, 31], [32, 32]])
  offset = jnp.array([[3, 1], [0, 0], [0, 0]])
  ours = np.asarray(tf.resize_and_pad(x, size, offset, (32, 32)))
  xt = to_torch(x).permute(0, 3, 1, 2)
  for b in range(3):
    s, (top, left) = int(size[b, 0]), map(int, offset[b])
    r = F.interpolate(xt[b:b + 1], size=[s, s], mode="bilinear", align_corners=False)
    r = F.pad(r, [left, 32 - s - left, top, 32 - s - top], value=0)
    np.testing.assert_allclose(ours[b], r[0].permute(1, 2, 0).numpy(), atol=2e-6)
  np.testing.assert_array_equal(ours[2], np.asarray(x[2]))  # same size, no offset: the identity


def _nchw_model(torch, model):
  """A torch model on NCHW images computing ``model`` of the NHWC tensor (for torchattacks' NCHW attacks)."""
  class M(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.m = model

    def forward(self, x):
      return self.m(x.permute(0, 2, 3, 1))
  return M().eval()


@pytest.mark.torch
def test_deterministic_members_match_torchattacks():
  """NI, SI-NI and TI without DI on the trained digits model: the same points up to float rounding."""
  torch = pytest.importorskip("torch", reason="torch not installed")
  ta = pytest.importorskip("torchattacks", reason="torchattacks not installed")
  from attack_testkit import linear_apply, torch_linear
  params, x, y = digits_model()
  x, y = x[:60], y[:60]
  g = lambda v: linear_apply(params, v)
  xt, yt = to_torch(x).permute(0, 3, 1, 2).contiguous(), to_torch(y).long()
  x3 = jnp.concatenate([x] * 3, axis=-1)  # torchattacks' TI kernel is stacked for 3 channels
  g3 = lambda v: linear_apply(params, v[..., :1])
  lin = torch_linear(params)
  model = _nchw_model(torch, lin)
  model3 = _nchw_model(torch, _first_channel(torch, lin))
  cases = [
      (ta.NIFGSM(model, eps=0.1, alpha=0.02, steps=10, decay=1.0), g, x, xt,
       dict(name="nifgsm")),
      (ta.SINIFGSM(model, eps=0.1, alpha=0.02, steps=10, decay=1.0, m=5), g, x, xt,
       dict(name="sinifgsm")),
      (ta.TIFGSM(model3, eps=0.1, alpha=0.02, steps=10, decay=1.0, diversity_prob=0.0, len_kernel=5, nsig=3), g3,
       x3, to_torch(x3).permute(0, 3, 1, 2).contiguous(), dict(name="tifgsm", decay=1.0, diversity_prob=0.0,
                                                                len_kernel=5)),
  ]
  for atk, fn, xj, xtt, cfg in cases:
    name = cfg.pop("name")
    ref = atk(xtt, yt).permute(0, 2, 3, 1).numpy()
    ours = np.asarray(registry.get_attack(name, eps=0.1, step_size=0.02, steps=10, **cfg)(fn, xj, y, KEY))
    assert np.mean(np.abs(ours - ref) < 1e-5) > 0.999, name
    np.testing.assert_array_equal(np.argmax(np.asarray(fn(jnp.asarray(ours))), 1), np.argmax(np.asarray(fn(jnp.asarray(ref))), 1))


def _first_channel(torch, model):
  class M(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.m = model

    def forward(self, x):  # NHWC
      return self.m(x[..., :1])
  return M()
