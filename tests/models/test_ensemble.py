"""Ensembles as one model (models.ensemble): layouts, members, the ensemble of one, heterogeneous members."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import models
from jaxrobust.models.ensemble import Ensemble, combine_member_logits, num_members_of

X = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))


# Tiny programs: compile time dominates, mostly XLA's backend optimiser (values unaffected at these tolerances).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def jitted(module):
  """module.apply under jit (op-by-op ResNets are slow to test)."""
  return jax.jit(module.apply, static_argnames=("train", "return_features", "mutable", "member_inputs"),
                 compiler_options=FAST_COMPILE)


def _ensemble(name="small_cnn", m=3, **kw):
  module = models.get_model(name, 5, members=m, **kw)
  return module, models.init_model(module, jax.random.key(0), X.shape[1:])


def test_homogeneous_shapes_and_variables():
  module, variables = _ensemble("small_cnn", 3, channels=(4, 8), hidden=16, conv_padding=1)
  assert isinstance(module, Ensemble) and num_members_of(variables) == 3
  out = jitted(module)(variables, X, return_features=True)
  assert out.logits.shape == (6, 5) and out.member_logits.shape == (3, 6, 5)
  assert out.member_features.shape == (3, 6, 16) and out.features.shape == (6, 48)
  np.testing.assert_allclose(out.features[:, 16:32], out.member_features[1])
  # members start from different initialisations
  assert not np.allclose(out.member_logits[0], out.member_logits[1])
  # softmax of the ensemble logits is the mean member probability
  np.testing.assert_allclose(jax.nn.softmax(out.logits), jax.nn.softmax(out.member_logits).mean(0), atol=1e-6)


def test_layouts_same_outputs_without_batch_norm():
  """Every layout reads the same variables and gives the same outputs (a BN-free net; the BN one is slow)."""
  ref_module, variables = _ensemble("small_cnn", 3, channels=(4, 8), hidden=16, conv_padding=1)
  ref = jitted(ref_module.clone(layout="vmap"))(variables, X, return_features=True)
  for layout in ("unrolled", "scan"):
    out = jitted(ref_module.clone(layout=layout))(variables, X, return_features=True)
    np.testing.assert_allclose(out.member_logits, ref.member_logits, atol=1e-5)


@pytest.mark.slow  # ResNet-20 members, train mode: ~25 s per layout on 2 quiet cores
@pytest.mark.parametrize("layout", ["unrolled", "scan"])
def test_layouts_same_variables_and_outputs(layout):
  ref_module, variables = _ensemble("resnet20", 2, width=4)
  module, variables2 = _ensemble("resnet20", 2, width=4, ensemble_layout=layout)
  chex_equal = jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), variables, variables2)
  del chex_equal
  ref_apply, apply = jitted(ref_module.clone(layout="vmap")), jitted(module)
  ref = ref_apply(variables, X, return_features=True)
  out = apply(variables, X, return_features=True)
  np.testing.assert_allclose(out.member_logits, ref.member_logits, atol=2e-5)
  # train mode: BN batch statistics per member, updated per member
  (o1, u1) = apply(variables, X, train=True, mutable=("batch_stats",))
  (o2, u2) = ref_apply(variables, X, train=True, mutable=("batch_stats",))
  np.testing.assert_allclose(o1, o2, atol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), u1, u2)


def test_members_equal_a_loop_of_single_models():
  module, variables = _ensemble("resnet20", 2, width=4)
  single = jitted(models.get_model("resnet20", 5, width=4))
  z = jitted(module)(variables, X, return_features=True).member_logits
  for m in range(2):
    np.testing.assert_allclose(single(models.member_variables(variables, m), X), z[m], atol=2e-5)
  member_apply = jax.jit(models.make_member_apply(module, microbatch=4))
  np.testing.assert_allclose(member_apply(variables, X), z, atol=2e-5)


def test_ensemble_of_one_is_the_single_model():
  single = models.get_model("small_cnn", 5, channels=(4, 8), hidden=16, conv_padding=1)
  v = models.init_model(single, jax.random.key(3), X.shape[1:])
  ens = Ensemble(member=single, num_members=1)
  ev = models.stack_members([v])
  z_single = jitted(single)(v, X)
  z_ens = jitted(ens)(ev, X)
  np.testing.assert_allclose(z_ens, jax.nn.log_softmax(z_single), atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, models.member_variables(ev, 0), v)


def test_member_inputs_run_each_member_on_its_own_batch():
  module, variables = _ensemble("small_cnn", 2, channels=(4, 8), hidden=16, conv_padding=1)
  xs = jnp.stack([X, X[::-1]])
  z = module.apply(variables, xs, member_inputs=True)
  full = module.apply(variables, X, return_features=True).member_logits
  np.testing.assert_allclose(z[0], full[0], atol=1e-6)
  np.testing.assert_allclose(z[1], full[1][::-1], atol=1e-6)
  with pytest.raises(ValueError, match="member_inputs"):
    module.apply(variables, X, member_inputs=True)


def test_heterogeneous_members():
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  module = models.get_model("ensemble", 5, members=("small_cnn", "mlp"))
  variables = models.init_model(module, jax.random.key(0), x.shape[1:])
  out = module.apply(variables, x, return_features=True)
  assert out.member_logits.shape == (2, 3, 5) and isinstance(out.member_features, tuple)
  for m, name in enumerate(("small_cnn", "mlp")):
    single = models.get_model(name, 5)
    np.testing.assert_allclose(single.apply(models.member_variables(variables, m), x), out.member_logits[m],
                               atol=1e-6)
  assert num_members_of(variables) == 2


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="members=\\(model name"):
    models.get_model("ensemble", 5)
  with pytest.raises(ValueError, match="ensemble_layout"):
    models.get_model("mlp", 5, members=2, ensemble_layout="grouped")
  with pytest.raises(ValueError, match="members must be an int"):
    models.get_model("mlp", 5, members=0)


def test_single_logit_members_average_sigmoids():
  z = jax.random.normal(jax.random.key(0), (3, 4, 1))
  np.testing.assert_allclose(jax.nn.sigmoid(combine_member_logits(z)), jax.nn.sigmoid(z).mean(0), atol=1e-6)


@pytest.mark.slow  # ~75 s on 2 quiet cores (three layouts, two meshes); the PGD-AT ensemble runs in test_engine
def test_bn_ensemble_one_vs_eight_devices():
  """Train-mode forward, BN statistics and gradients of a sharded batch equal the one-device ones per layout."""
  import os
  import pathlib
  import subprocess
  import sys
  env = dict(os.environ, JAXROBUST_XLA_FLAGS="0")
  env.pop("XLA_FLAGS", None)
  r = subprocess.run([sys.executable, str(pathlib.Path(__file__).with_name("_ensemble_devices.py"))],
                     capture_output=True, text=True, env=env, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  rows = [line.split() for line in r.stdout.strip().splitlines()]
  assert [row[0] for row in rows] == ["vmap", "unrolled", "scan"]
  for row in rows:
    assert max(float(v) for v in row[1:]) < 1e-4, r.stdout


def test_micro_batched_features_and_train_step_eval_forward():
  """Inference forwards run in micro-batches of rows; an ensemble's member arrays (M, B, ...) survive them."""
  from jaxrobust.train.step import make_forwards
  module, variables = _ensemble("small_cnn", 2, channels=(4, 8), hidden=16, conv_padding=1)
  x = jax.random.uniform(jax.random.key(2), (10, 8, 8, 3))
  whole = models.make_features_apply(module, microbatch=None)(variables, x)
  chunked = models.make_features_apply(module, microbatch=4)(variables, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole, chunked)
  assert chunked.member_logits.shape == (2, 10, 5)
  _, eval_forward = make_forwards(module, microbatch=3)
  out = eval_forward(variables["params"], {}, x)
  np.testing.assert_allclose(out.member_features, whole.member_features, atol=1e-6)


def test_ensemble_run_checkpoints_resumes_and_loads(tmp_path):
  """An ensemble trains, checkpoints and resumes like one model: 3 + 2 resumed steps equal 5 straight ones, and
  load_run restores the members."""
  from jaxrobust.configs import load_config
  from jaxrobust.runs import load_run
  from jaxrobust.train.loop import Trainer
  over = ["model.name=mlp", "model.members=2", "model.hidden_sizes=(16,)", "train.epochs=1", "train.batch_size=32",
          "data.train_subset=160", "method.name=ensemble_at", "method.attacker=tamoo", "method.steps=2",
          "method.eps=0.1", "method.step_size=0.05", "train.checkpoint_every_steps=3"]

  def trainer(name):
    cfg = load_config("quickstart_digits", over)
    cfg["output_dir"] = str(tmp_path / name)
    return Trainer(cfg, progress=False)
  straight = trainer("straight").fit()
  first = trainer("resumed")
  first.fit(max_steps=3)
  first.checkpointer.close()
  resumed = trainer("resumed").fit()
  assert int(straight.step) == int(resumed.step) == 5
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight.params, resumed.params)
  run = load_run(str(tmp_path / "resumed"))
  assert num_members_of(run.variables) == 2
  np.testing.assert_allclose(run.apply(run.variables, jnp.zeros((2, 8, 8, 1))).shape, (2, 10))
