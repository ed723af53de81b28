"""Dropout in train mode: every forward of a step draws its own masks from the step key; eval mode has none."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.configs import load_config
from jaxrobust.models import get_model, init_model
from jaxrobust.train.loop import Trainer
from jaxrobust.train.step import make_forwards


def _model_and_params():
  module = get_model("small_cnn", 10, channels=(4, 8), hidden=32, dropout_rate=0.5)
  variables = init_model(module, jax.random.PRNGKey(0), (1, 28, 28, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (6, 28, 28, 1))
  return module, variables["params"], x


def test_each_train_forward_draws_its_own_mask_and_the_key_fixes_them():
  module, params, x = _model_and_params()
  fwd, eval_fwd = make_forwards(module, dropout_key=jax.random.PRNGKey(3))
  a, _ = fwd(params, {}, x)
  b, _ = fwd(params, {}, x)
  assert not np.allclose(a.features, b.features)  # second call, second mask
  # Inverted dropout at rate 0.5: surviving fc1 units are doubled, so some features differ from eval mode.
  e = eval_fwd(params, {}, x)
  assert not np.allclose(a.features, e.features)
  again, _ = make_forwards(module, dropout_key=jax.random.PRNGKey(3))
  a2, _ = again(params, {}, x)
  np.testing.assert_array_equal(np.asarray(a.logits), np.asarray(a2.logits))
  other, _ = make_forwards(module, dropout_key=jax.random.PRNGKey(4))
  assert not np.allclose(other(params, {}, x)[0].logits, a.logits)
  # Eval mode is deterministic and mask-free.
  np.testing.assert_array_equal(np.asarray(eval_fwd(params, {}, x).logits), np.asarray(e.logits))


def test_trades_mnist_style_step_with_dropout_is_deterministic(tmp_path):
  over = ["train.epochs=1", "train.batch_size=32", "data.train_subset=64", "model.dropout_rate=0.5",
          "method.name=trades", "method.eps=0.1", "method.step_size=0.05", "method.steps=2", "method.beta=1.0"]
  cfg = load_config("quickstart_digits", over)
  cfg["output_dir"] = str(tmp_path / "run")
  trainer = Trainer(cfg, progress=False)
  state = trainer.init_state()
  batch = next(iter(trainer.batches(0)))
  batch = {k: jnp.asarray(batch[k]) for k in ("image", "label", "index")}
  s1, m1 = trainer.step_fn(state, batch)
  s2, m2 = trainer.step_fn(trainer.init_state(), batch)
  assert np.isfinite(float(m1["loss"]))
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
