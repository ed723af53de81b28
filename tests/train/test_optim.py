"""Optimisers and schedules: coupled weight decay equals PyTorch's SGD/Adam; schedule shapes."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrobust.train.optim import make_optimizer, make_schedule


def test_piecewise_schedule_drops_at_epoch_boundaries():
  s = make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=10, epochs=100, boundaries=(75, 90), decay=0.1)
  assert float(s(749)) == pytest.approx(0.1)
  assert float(s(750)) == pytest.approx(0.01)
  assert float(s(899)) == pytest.approx(0.01)
  assert float(s(900)) == pytest.approx(0.001)


def test_piecewise_schedule_with_one_factor_per_boundary():
  s = make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=2, epochs=10, boundaries=(3, 6, 8),
                    decay=(0.1, 0.1, 0.5))
  np.testing.assert_allclose([float(s(t)) for t in (0, 5, 6, 11, 12, 15, 16, 19)],
                             [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0005, 0.0005], rtol=1e-6)
  with pytest.raises(ValueError, match="2 factors for 3 boundaries"):
    make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=1, epochs=10, boundaries=(3, 6, 8), decay=(0.1, 0.1))
  with pytest.raises(ValueError, match="must be > 0"):
    make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=1, epochs=10, boundaries=(3,), decay=0.0)
  with pytest.raises(ValueError, match="increasing"):
    make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=1, epochs=10, boundaries=(6, 3))


def test_cosine_and_warmup():
  s = make_schedule(lr=0.2, schedule="cosine", steps_per_epoch=10, epochs=10, warmup_epochs=1)
  assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(0.2)
  assert float(s(100)) == pytest.approx(0.0, abs=1e-6)
  vals = [float(s(i)) for i in range(10, 101, 10)]
  assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_bad_optimizer_settings():
  with pytest.raises(ValueError, match="schedule"):
    make_schedule(lr=0.1, schedule="step", steps_per_epoch=1, epochs=1)
  with pytest.raises(ValueError, match="learning rate"):
    make_schedule(lr=0.0, steps_per_epoch=1, epochs=1)
  with pytest.raises(ValueError, match="optimizer"):
    make_optimizer(name="lion", lr_schedule=optax.constant_schedule(0.1))
  with pytest.raises(ValueError, match="weight_decay"):
    make_optimizer(name="sgd", lr_schedule=optax.constant_schedule(0.1), weight_decay=-1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_coupled_weight_decay_matches_torch(name):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(5, 3)).astype(np.float32)
  grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(4)]
  lr, wd = 0.05, 5e-3
  tx = make_optimizer(name=name, lr_schedule=optax.constant_schedule(lr), momentum=0.9, weight_decay=wd)
  params = {"w": jnp.asarray(w0)}
  state = tx.init(params)
  tw = torch.nn.Parameter(torch.tensor(w0))
  topt = (torch.optim.SGD([tw], lr=lr, momentum=0.9, weight_decay=wd) if name == "sgd"
          else torch.optim.Adam([tw], lr=lr, weight_decay=wd))
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    topt.zero_grad()
    tw.grad = torch.tensor(g)
    topt.step()
  np.testing.assert_allclose(np.asarray(params["w"]), tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_piecewise_boundaries_stay_in_epochs_with_warmup():
  s = make_schedule(lr=0.1, schedule="piecewise", steps_per_epoch=10, epochs=100, boundaries=(75,), warmup_epochs=5)
  assert float(s(25)) == pytest.approx(0.05)
  assert float(s(749)) == pytest.approx(0.1) and float(s(750)) == pytest.approx(0.01)
