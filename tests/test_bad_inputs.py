"""Bad input at every public entry point gives a clear error (matched on its message), never a silent answer.

One table: each case feeds an entry point (attacks through ``get_attack``, losses, models, ``ArrayDataset``,
``RobustEvaluator``, the CLI's argument parsing) a wrong shape, dtype, range, NaN, label, name or an empty
input. Models are a linear logits function or the tiny 'mlp' on 4x4 images, so nearly every case fails
before anything compiles.
"""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import losses
from jaxrobust.attacks.registry import attack_names, attack_parameters, get_attack
from jaxrobust.data import ArrayDataset
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.models.registry import get_model, init_model, make_apply

KEY = jax.random.PRNGKey(0)
W = jnp.asarray(np.random.default_rng(0).normal(size=(16, 10)), jnp.float32)


def linear(x):
  return x.reshape(x.shape[0], -1) @ W


X = jnp.full((3, 4, 4, 1), 0.5, jnp.float32)
Y = jnp.array([0, 1, 2])
NAN_X = X.at[1, 0, 0, 0].set(jnp.nan)
INF_X = X.at[2, 1, 1, 0].set(jnp.inf)
LOGITS = jnp.zeros((3, 10))
# What every attack needs when its signature has no default (the rest keep their defaults).
REQUIRED = {"eps": 0.1, "step_size": 0.01, "steps": 1}
# Options an attack requires in combination although each has a default (B&B's PGD start needs a radius).
REQUIRED_TOGETHER = {"bb": {"eps": 0.1}}


def attack(name, **config):
  required = {k: REQUIRED[k] for k, p in attack_parameters(name).items() if p.default is inspect.Parameter.empty}
  return get_attack(name, **{**required, **REQUIRED_TOGETHER.get(name, {}), **config})


def run_attack(name, x=X, y=Y, **config):
  return lambda: attack(name, **config)(linear, x, y, KEY)


def dataset(images=None, labels=(0, 1, 2), num_classes=10):
  images = np.full((len(labels), 4, 4, 1), 0.5, np.float32) if images is None else images
  return ArrayDataset(images, np.asarray(labels), num_classes, "bad_inputs")


_MLP = {}


def mlp():
  """The tiny 'mlp' (10 classes on 4x4x1 images): (apply, the variables' shapes), traced once, never compiled;
  every case that uses it fails while tracing or before any batch runs."""
  if not _MLP:
    module = get_model("mlp", 10, hidden_sizes=(8,))
    _MLP["model"] = (make_apply(module), jax.eval_shape(lambda: init_model(module, KEY, (4, 4, 1))))
  return _MLP["model"]


def apply_mlp(x):
  apply, v = mlp()
  return lambda: jax.eval_shape(apply, v, x)


def evaluate(ds, **kw):
  def call():
    apply, v = mlp()
    return RobustEvaluator(apply).evaluate(v, ds() if callable(ds) else ds, progress=False, **kw)
  return call


def cli(*argv):
  from jaxrobust.cli import build_parser
  return lambda: build_parser().parse_args(list(argv))


def cli_main(*argv):
  from jaxrobust.cli import main
  return lambda: main(list(argv))


def parse_spec(text):
  from jaxrobust.cli import _parse_attack_spec
  return lambda: _parse_attack_spec(text)


NAN = r"NaN or Inf pixels"
CASES = [
    # NaN / Inf pixels: every registered attack refuses them through the one shared entry check.
    *[(f"attack-{n}-nan", run_attack(n, NAN_X), ValueError, NAN) for n in attack_names()],
    ("attack-pgd-inf", run_attack("pgd", INF_X), ValueError, NAN),
    ("attack-fgsm-inf", run_attack("fgsm", INF_X), ValueError, NAN),
    # Pixel range and dtype.
    ("attack-pgd-range", run_attack("pgd", X * 255.0), ValueError, r"must lie in \[0, 1\]"),
    ("attack-pgd-uint8", run_attack("pgd", (X * 255).astype(jnp.uint8)), TypeError, r"x.astype\(np.float32\) / 255"),
    # Shapes: no batch axis, an empty batch.
    ("attack-pgd-no-batch-axis", run_attack("pgd", X[0]), ValueError, r"leading batch axis.*x\[None\]"),
    ("attack-pgd-empty", run_attack("pgd", X[:0], Y[:0]), ValueError, "empty batch"),
    ("attack-apgd-empty", run_attack("apgd", X[:0], Y[:0]), ValueError, "empty batch"),
    ("attack-square-empty", run_attack("square", X[:0], Y[:0]), ValueError, "empty batch"),
    ("attack-autoattack-empty", run_attack("autoattack", X[:0], Y[:0]), ValueError, "empty batch"),
    # Labels.
    ("attack-pgd-label-K", run_attack("pgd", y=jnp.array([0, 1, 10])), ValueError, r"y must lie in \[0, 10\)"),
    ("attack-pgd-label-negative", run_attack("pgd", y=jnp.array([0, -1, 2])), ValueError, r"y must lie in \[0, 10\)"),
    ("attack-apgd-label-K", run_attack("apgd", y=jnp.array([0, 1, 10])), ValueError, r"y must lie in \[0, 10\)"),
    ("attack-pgd-float-labels", run_attack("pgd", y=jnp.array([0.0, 1.0, 2.0])), TypeError, "integer class labels"),
    ("attack-pgd-labels-2d", run_attack("pgd", y=Y[:, None]), ValueError, r"y must have shape \(batch,\)"),
    # Settings.
    ("attack-pgd-eps-string", lambda: get_attack("pgd", eps="0.1"), ValueError, "eps must be a number"),
    ("attack-pgd-eps-negative", run_attack("pgd", eps=-0.1), ValueError, "eps must be >= 0"),
    ("attack-pgd-eps-nan", run_attack("pgd", eps=float("nan")), ValueError, "eps must be finite"),
    ("attack-apgd-n_iter-0", run_attack("apgd", n_iter=0), ValueError, "n_iter must be an integer >= 1"),
    ("attack-apgd-n_restarts-0", run_attack("apgd", n_restarts=0), ValueError, "n_restarts must be an integer >= 1"),
    ("attack-fab-n_iter-0", run_attack("fab", n_iter=0), ValueError, "n_iter must be an integer >= 1"),
    ("attack-pgd-steps-negative", run_attack("pgd", steps=-1), ValueError, "steps >= 0"),
    ("attack-unknown-name", lambda: get_attack("pgdd", eps=0.1), ValueError, "unknown attack 'pgdd'"),
    ("attack-misspelt-option", lambda: get_attack("pgd", eps=0.1, step=3), (TypeError, ValueError), "step"),
    ("attack-apgd-unknown-norm", run_attack("apgd", norm="l3"), ValueError, "norm"),
    # Losses: labels outside [0, K), negative, float, wrong shape; too few classes.
    ("loss-ce-label-K", lambda: losses.cross_entropy(LOGITS, jnp.array([0, 1, 10])), ValueError, r"\[0, 10\)"),
    ("loss-ce-label-negative", lambda: losses.cross_entropy(LOGITS, jnp.array([0, -1, 2])), ValueError,
     r"\[0, 10\)"),
    ("loss-ce-float-labels", lambda: losses.cross_entropy(LOGITS, jnp.array([0.0, 1.0, 2.0])), TypeError,
     "truncated"),
    ("loss-ce-label-shape", lambda: losses.cross_entropy(LOGITS, Y[:2]), ValueError, r"shape \(batch,\)=\(3,\)"),
    ("loss-dlr-label-K", lambda: losses.dlr(LOGITS, jnp.array([0, 1, 10])), ValueError, r"\[0, 10\)"),
    ("loss-margin-label-K", lambda: losses.margin(LOGITS, jnp.array([0, 1, 10])), ValueError, r"\[0, 10\)"),
    ("loss-cw-float-labels", lambda: losses.cw_margin(LOGITS, jnp.array([0.0, 1.0, 2.0])), TypeError, "integer"),
    ("loss-dlr-two-classes", lambda: losses.dlr(jnp.zeros((3, 2)), Y % 2), ValueError, "at least 3 classes"),
    ("loss-unknown-name", lambda: losses.get_attack_loss("xent"), ValueError, "unknown attack loss 'xent'"),
    # Models.
    ("model-unknown-name", lambda: get_model("resnet19"), ValueError, "unknown model 'resnet19'"),
    ("model-num-classes-0", lambda: get_model("mlp", 0), ValueError, "num_classes must be an integer >= 1"),
    ("model-num-classes-negative", lambda: get_model("mlp", -3), ValueError, "num_classes must be an integer >= 1"),
    ("model-num-classes-float", lambda: get_model("mlp", 2.5), ValueError, "num_classes must be an integer >= 1"),
    ("model-input-too-small", lambda: jax.eval_shape(lambda: init_model(get_model("small_cnn", 10), KEY, (2, 2, 1))),
     ValueError, "too small for the architecture"),
    ("model-nchw", apply_mlp(jnp.full((3, 1, 4, 4), 0.5)), ValueError, r"channels-first.*transpose\(0, 2, 3, 1\)"),
    ("model-uint8", apply_mlp(jnp.zeros((3, 4, 4, 1), jnp.uint8)), TypeError, "floating"),
    ("model-rank-3", apply_mlp(X[0]), ValueError, r"\(B, H, W, C\)"),
    # Data.
    ("dataset-nan", lambda: dataset(np.where(np.eye(4)[None, :, :, None] > 0, np.nan, 0.5).repeat(3, 0)), ValueError,
     NAN),
    ("dataset-inf", lambda: dataset(np.full((3, 4, 4, 1), np.inf, np.float32)), ValueError, NAN),
    ("dataset-range", lambda: dataset(np.full((3, 4, 4, 1), 2.0, np.float32)), ValueError, r"\[0, 1\]"),
    ("dataset-label-K", lambda: dataset(labels=(0, 1, 10)), ValueError, r"\[0, 10\)"),
    ("dataset-label-negative", lambda: dataset(labels=(0, -1, 2)), ValueError, r"\[0, 10\)"),
    ("dataset-float-labels", lambda: dataset(labels=(0.0, 1.0, 2.0)), ValueError, "integers"),
    ("dataset-rank-3", lambda: dataset(np.zeros((3, 4, 4), np.float32)), ValueError, r"\(N, H, W, C\)"),
    ("dataset-num-classes-0", lambda: dataset(num_classes=0), ValueError, "num_classes must be >= 1"),
    ("dataset-int16-images", lambda: dataset(np.zeros((3, 4, 4, 1), np.int16)), ValueError, "uint8"),
    # Evaluator: refused before any batch runs.
    ("evaluate-max-examples-0", evaluate(dataset, max_examples=0), ValueError, "max_examples must be an integer >= 1"),
    ("evaluate-batch-size-0", evaluate(dataset, batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    ("evaluate-empty", evaluate(lambda: dataset().take(0)), ValueError, "is empty"),
    ("evaluate-class-count", evaluate(lambda: dataset(num_classes=3)), ValueError, "has 3 classes but the model outputs 10"),
    ("evaluate-nan-after-construction", evaluate(lambda: _mutated_nan()), ValueError, NAN),
    ("evaluate-unknown-attack", evaluate(dataset, attacks=[{"name": "nope", "eps": 0.1}]), ValueError,
     "unknown attack"),
    # CLI argument parsing.
    ("cli-evaluate-max-examples-0", cli("evaluate", "--run-dir", "r", "--max-examples", "0"), SystemExit, "integer >= 1"),
    ("cli-attack-max-examples-abc", cli("attack", "--run-dir", "r", "--attack", "pgd", "--out", "a.npz",
                                        "--max-examples", "abc"), SystemExit, "integer >= 1"),
    ("cli-evaluate-no-run-dir", cli_main("evaluate", "--no-compile-cache"), SystemExit, "--run-dir"),
    ("cli-train-no-config", cli("train"), SystemExit, "--config"),
    ("cli-unknown-command", cli("trian"), SystemExit, "invalid choice"),
    ("cli-attack-spec-no-value", parse_spec("pgd:eps"), SystemExit, "must look like key=value"),
]


@pytest.mark.parametrize("entry,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(entry, exc, match, capsys):
  with pytest.raises(exc) as info:
    entry()
  message = str(info.value) + capsys.readouterr().err  # argparse writes its message to stderr
  assert re.search(match, message), message


def _mutated_nan():
  """A dataset whose array was changed in place after its checks ran (numpy arrays stay writable)."""
  ds = dataset()
  ds.images[0, 0, 0, 0] = np.nan
  return ds


def test_traced_attack_stays_traceable():
  """Inside a caller's jit the value checks are skipped (documented): the attack still traces and runs."""
  out = jax.jit(lambda x: attack("fgsm")(linear, x, Y, KEY))(X)
  assert out.shape == X.shape and bool(jnp.all(jnp.isfinite(out)))


def test_documented_zero_budget_pgd_returns_its_start():
  """steps=0 PGD returns its random start (a valid point in the eps-ball), documented in ``pgd_loop``."""
  x_adv = attack("pgd", steps=0)(linear, X, Y, KEY)
  assert 0.0 < float(jnp.max(jnp.abs(x_adv - X))) <= 0.1 + 1e-6


@pytest.mark.slow  # Square's compile
def test_documented_zero_budget_square_returns_x():
  assert bool(jnp.all(attack("square", n_queries=0)(linear, X, Y, KEY) == X))


def test_case_count(capsys):
  names = [c[0] for c in CASES]
  assert len(names) == len(set(names)) and len(CASES) >= 90
  with capsys.disabled():
    print(f"\nbad-input suite: {len(CASES)} table cases (+ 3 documented behaviours, 1 training-split check)")


def test_trainer_refuses_splits_with_other_class_counts(tmp_path):
  """The model is sized by the training split; a test split of another dataset is refused before training."""
  from jaxrobust.configs import load_config
  from jaxrobust.train.loop import Trainer
  cfg = load_config("quickstart_digits", [f"output_dir={tmp_path}"])
  with pytest.raises(ValueError, match="has 3 classes but the training split"):
    Trainer(cfg, train_ds=dataset(), test_ds=dataset(labels=(0, 1, 2), num_classes=3), progress=False)
