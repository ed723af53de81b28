"""AWP: the weight perturbation (Wu, Xia, Wang 2020), warm-up, and the perturbed-point gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods.awp import awp_perturbation, make_awp_at, make_awp_trades
from jaxrobust.methods.pgd_at import make_pgd_at
from jaxrobust.train.step import make_context

try:
  from tests.methods import method_harness as h
  from tests.methods import numpy_reference as ref
except ImportError:  # run from inside tests/methods
  import method_harness as h
  import numpy_reference as ref


@pytest.fixture(scope="module")
def setup():
  model = h.TinyMLP()
  x, y = h.digits(64)
  variables = model.init(jax.random.key(0), jnp.asarray(x))
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  return model, variables, batch


def _loss_fn(model, variables, batch):
  def loss(params):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, batch["image"],
                            train=True, mutable=["batch_stats"])
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][:, None], 1))
  return loss


def test_relative_size_direction_and_untouched_leaves(setup):
  model, variables, batch = setup
  params = variables["params"]
  loss = _loss_fn(model, variables, batch)
  gamma = 5e-3
  v = h.jit(lambda p: awp_perturbation(loss, p, gamma, proxy_lr=0.01))(params)
  grads = h.jit(jax.grad(loss))(params)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path)
    vl = np.asarray(_get(v, path))
    if name.endswith("['kernel']"):
      np.testing.assert_allclose(np.linalg.norm(vl), gamma * np.linalg.norm(leaf), rtol=1e-5)
      # The NumPy diff_in_weights of a proxy that took one SGD step on -loss.
      proxy = np.asarray(leaf, np.float64) + 0.01 * np.asarray(_get(grads, path), np.float64)
      expected = ref.awp_diff(np.asarray(leaf, np.float64), proxy, gamma)
      np.testing.assert_allclose(vl, expected, rtol=1e-4, atol=1e-9)
    else:  # biases, BN scale/bias
      np.testing.assert_array_equal(vl, 0.0)
  # v does not depend on the proxy lr (it only enters through the 1e-20).
  v_big = h.jit(lambda p: awp_perturbation(loss, p, gamma, proxy_lr=1.0))(params)
  for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v_big)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-10)


def _get(tree, path):
  for p in path:
    tree = tree[p.key]
  return tree


def _attack_and_loss(method, model, variables, batch):
  """Jitted (epoch -> attack + loss + grads) with the epoch traced: one compilation per method."""
  def ctx_at(epoch):
    return make_context(model, jnp.asarray(0, jnp.int32), 1, 10)._replace(epoch=epoch)

  @h.jit
  def run(params, epoch):
    ctx = ctx_at(epoch)
    x_adv, aux = method.attack(params, variables["batch_stats"], batch, jax.random.key(1), (), ctx)
    lossf = lambda p: method.loss(p, variables["batch_stats"], batch, x_adv, aux, (), jax.random.key(2), ctx)
    (value, laux), grads = jax.value_and_grad(lossf, has_aux=True)(params)
    return x_adv, aux, value, laux.metrics, grads
  return lambda epoch: run(variables["params"], jnp.asarray(epoch, jnp.float32)), ctx_at(jnp.asarray(0.0))


def test_gradient_is_taken_at_the_perturbed_point(setup):
  """grad of L(theta + sg(v)) w.r.t. theta == grad of the base loss at theta + v
  (perturb, step, restore: the update lands on the unperturbed weights)."""
  model, variables, batch = setup
  method = make_awp_at(gamma=0.01, steps=2)
  run, ctx = _attack_and_loss(method, model, variables, batch)
  x_adv, aux, value, metrics, grads = run(0.0)
  base = make_pgd_at(steps=2)
  perturbed = jax.tree.map(lambda w, d: w + d, variables["params"], aux["v"])

  @h.jit
  def base_grad(p):
    return jax.value_and_grad(lambda q: base.loss(q, variables["batch_stats"], batch, x_adv, None, (),
                                                  jax.random.key(2), ctx)[0])(p)
  value_ref, grads_ref = base_grad(perturbed)
  np.testing.assert_allclose(float(value), float(value_ref), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert float(metrics["awp_active"]) == 1.0 and float(metrics["awp_norm"]) > 0
  for key in ("loss", "acc", "adv_acc"):
    assert key in metrics


def test_warmup_uses_the_traced_epoch(setup):
  """awp_warmup = 3 (1-indexed, as the TRADES-AWP script): epochs 1-2 unperturbed, 3 perturbed."""
  model, variables, batch = setup
  method = make_awp_trades(warmup=3, steps=1)
  run, _ = _attack_and_loss(method, model, variables, batch)
  _, aux, value, metrics, _ = run(1.99)
  assert float(metrics["awp_active"]) == 0.0
  for leaf in jax.tree.leaves(aux["v"]):
    np.testing.assert_array_equal(leaf, 0.0)
  _, aux, value2, metrics, _ = run(2.0)
  assert float(metrics["awp_active"]) == 1.0 and float(metrics["awp_norm"]) > 0
  assert float(value2) > float(value)    # the weights were perturbed to increase the loss


@pytest.mark.parametrize("kw", [dict(gamma=-0.01), dict(proxy_lr=0.0), dict(warmup=-1), dict(mix=2.0)])
def test_rejects_bad_hyperparameters(kw):
  with pytest.raises(ValueError):
    make_awp_at(**kw)


@pytest.mark.parametrize("factory", [make_awp_at, make_awp_trades])
def test_train_step_awp(factory):
  h.check_training(factory(steps=2, warmup=0))
