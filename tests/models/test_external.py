"""Any JAX model (models.external): linen, NNX and pure-function models train, checkpoint, resume and
evaluate through the same Trainer, load_run and CLI as the library's own models."""

import json
import os

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.cli import main
from jaxrobust.models import init_model, make_apply
from jaxrobust.models.external import ExternalModel, PureModel, as_module, from_factory, has_features
from jaxrobust.runs import load_run

HERE = os.path.dirname(os.path.abspath(__file__))
# 2 steps of 64 digits, evaluated on 64 test points without attacks
SHORT_RUN = ["train.epochs=1", "data.train_subset=128", "data.test_subset=64", "eval.attacks=[]"]


@pytest.fixture(autouse=True)
def user_models_importable(monkeypatch):
  monkeypatch.syspath_prepend(HERE)  # where external_models.py, the "user's package", lives


def _variables(module, seed=0):
  return init_model(module, jax.random.PRNGKey(seed), (8, 8, 1))


@pytest.mark.parametrize("factory,kind,features,batch_stats", [
  ("external_models:make_nnx_cnn", "nnx", True, True),
  ("external_models:make_mlp", "function", False, False),
  ("external_models:make_linen_cnn", "linen", False, True),
])
def test_every_kind_follows_the_library_calling_convention(factory, kind, features, batch_stats):
  module = from_factory(factory, num_classes=10, input_shape=(8, 8, 1), seed=0)
  assert isinstance(module, ExternalModel) and module.kind == kind and has_features(module) == features
  variables = _variables(module)
  assert ("batch_stats" in variables) == batch_stats
  x = jax.random.uniform(jax.random.PRNGKey(1), (5, 8, 8, 1))
  logits = make_apply(module)(variables, x)
  chex.assert_shape(logits, (5, 10))
  chex.assert_tree_all_finite(logits)
  out = module.apply(variables, x, return_features=True)
  chex.assert_trees_all_close(out.logits, logits)
  if features:
    chex.assert_shape(out.features, (5, 8))
  else:
    assert out.features is None
  if batch_stats:  # train mode uses batch statistics and returns updated running averages
    (train_out, updates) = module.apply(variables, x, train=True, return_features=True, mutable=["batch_stats"],
                                        rngs={"dropout": jax.random.PRNGKey(2)})
    chex.assert_trees_all_equal_structs(updates["batch_stats"], variables["batch_stats"])
    assert not np.allclose(jax.tree.leaves(updates["batch_stats"])[0], jax.tree.leaves(variables["batch_stats"])[0])
    assert not np.allclose(train_out.logits, logits)


def test_nnx_model_state_is_never_mutated_by_the_adapter():
  from external_models import make_nnx_cnn
  model = make_nnx_cnn(10, (8, 8, 1))
  before = jax.tree.map(np.array, jax.tree.leaves(model))
  module = as_module(model)
  variables = _variables(module)
  x = jnp.ones((4, 8, 8, 1)) * 0.5
  jax.jit(lambda v: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
  chex.assert_trees_all_equal(jax.tree.map(np.array, jax.tree.leaves(model)), before)
  # the adapter's variables are the NNX model's own weights
  chex.assert_trees_all_equal(variables["params"]["model"]["head"]["kernel"], np.asarray(model.head.kernel[...]))


def test_pure_function_from_a_tuple_or_puremodel_and_bad_models_refused():
  from external_models import make_mlp
  apply, params = make_mlp(10, (8, 8, 1))
  x = jnp.full((2, 8, 8, 1), 0.3)
  for model in ((apply, params), PureModel(apply, params)):
    module = as_module(model)
    chex.assert_trees_all_close(make_apply(module)(_variables(module), x), apply(params, x))
  with pytest.raises(TypeError, match="not a model"):
    as_module("resnet18")
  with pytest.raises(ValueError, match="cannot import"):
    from_factory("no_such_package_xyz:make", num_classes=10, input_shape=(8, 8, 1))
  with pytest.raises(ValueError, match="has no 'nope'"):
    from_factory("external_models:nope", num_classes=10, input_shape=(8, 8, 1))
  with pytest.raises(ValueError, match="must return logits"):
    as_module((lambda p, x: x, {})).init(jax.random.PRNGKey(0), x)


def _interrupted_then_resumed_equals_straight(tmp_path, factory, *overrides):
  """Trains `factory` 2 steps from the CLI, and again interrupted after 1 step then resumed from the CLI;
  returns both loaded runs after checking they are bit-identical."""
  from jaxrobust.configs import load_config
  from jaxrobust.train.loop import Trainer
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  train = ["train", "--config", "quickstart_digits", "--model", factory, "--no-progress"]
  assert main([*train, "--output-dir", str(straight), *SHORT_RUN, *overrides]) == 0
  assert json.loads((straight / "config.json").read_text())["model"]["name"] == factory
  cfg = load_config("quickstart_digits", [f"model.name={factory}", *SHORT_RUN, *overrides])
  cfg["output_dir"] = str(resumed)
  Trainer(cfg, progress=False).fit(max_steps=1)  # the "crash": a checkpoint at step 1
  assert main([*train, "--output-dir", str(resumed), *SHORT_RUN, *overrides]) == 0
  a, b = load_run(str(straight)), load_run(str(resumed))
  assert a.step == b.step == 2 and json.loads((resumed / "report.json").read_text())["steps"] == 2
  chex.assert_trees_all_equal(a.variables, b.variables)
  return a, b


@pytest.mark.slow  # ~32 s under load 20 on 2 cores; CI trains an NNX model through README's own block (test_readme)
def test_nnx_cnn_trains_resumes_and_evaluates_from_the_cli(tmp_path, capsys):
  run, _ = _interrupted_then_resumed_equals_straight(tmp_path, "external_models:make_nnx_cnn")
  initial = _variables(as_module(run.module))
  assert not np.allclose(run.variables["batch_stats"]["model"]["bn"]["var"], initial["batch_stats"]["model"]["bn"]["var"])
  assert main(["evaluate", "--run-dir", str(tmp_path / "straight"), "--no-progress", "--max-examples", "64",
               "--attack", "fgsm:eps=0.2,label=fgsm"]) == 0
  ev = json.loads((tmp_path / "straight" / "evaluation.json").read_text())
  assert ev["n"] == 64 and ev["robust_acc"]["fgsm"] <= ev["clean_acc"]


def test_pure_mlp_trains_resumes_and_evaluates_from_the_cli_with_a_params_file(tmp_path, capsys):
  run, _ = _interrupted_then_resumed_equals_straight(tmp_path, "external_models:make_mlp", "model.hidden=16")
  chex.assert_shape(run.variables["params"]["model"]["w1"], (64, 16))
  # a model jaxrobust did not train, evaluated with the weights of a params file
  params_file = tmp_path / "mlp.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(run.variables))
  out = tmp_path / "eval.json"
  evaluate = ["evaluate", "--model", "external_models:make_mlp", "--params", str(params_file), "--json", str(out),
              "--no-progress", "--max-examples", "64"]
  assert main([*evaluate, "--attack", "fgsm:eps=0.2,label=fgsm", "model.hidden=16"]) == 0
  ev = json.loads(out.read_text())
  assert ev["n"] == 64 and ev["robust_acc"]["fgsm"] <= ev["clean_acc"]
  # the same weights as the trained run: the same evaluation
  assert main(["evaluate", "--run-dir", str(tmp_path / "straight"), "--json", str(tmp_path / "run.json"),
               "--no-progress", "--max-examples", "64", "--attack", "fgsm:eps=0.2,label=fgsm"]) == 0
  run_ev = json.loads((tmp_path / "run.json").read_text())
  assert (ev["clean_acc"], ev["robust_acc"]) == (run_ev["clean_acc"], run_ev["robust_acc"])
  with pytest.raises(SystemExit, match="has shape"):  # hidden=32 by default: the file holds another model's weights
    main(evaluate)


def test_methods_that_read_latents_refuse_a_model_without_features(tmp_path, capsys):
  assert main(["train", "--config", "quickstart_digits", "--method", "ascl", "--model", "external_models:make_mlp",
               "--output-dir", str(tmp_path / "r"), "--no-progress", *SHORT_RUN]) == 2
  err = capsys.readouterr().err
  assert "latent features" in err and "return_features" in err
