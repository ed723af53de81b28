"""Shared pieces for the AdAP tests: a NumPy port of the reference estimators, a loss caller."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.methods.adap_state import init_adap_state

try:
  from tests.methods import method_harness as h
except ImportError:  # run from inside tests/adap
  import sys, pathlib
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from tests.methods import method_harness as h


class RefAPLoss:
  """NumPy transcription of LibAUC ``AveragePrecisionLoss.forward`` (= AdAP ``AUPRC_Loss``).

  NumPy fancy assignment with repeated indices keeps the last value, the behaviour the
  reference relies on when the positive-balanced sampler wraps within a batch.
  """

  def __init__(self, n, gamma, margin=0.6):
    self.u_all = np.zeros((n, 1))
    self.u_pos = np.zeros((n, 1))
    self.gamma, self.margin = gamma, margin

  def __call__(self, s, y, index):
    s, y = np.asarray(s, np.float64), np.asarray(y)
    pos_mask = y == 1
    f_ps = s[pos_mask][:, None]
    index_p = np.asarray(index)[pos_mask]
    mat = np.tile(s[None, :], (len(f_ps), 1))
    sur = np.maximum(self.margin - (f_ps - mat), 0.0) ** 2
    pos_sur = sur * pos_mask[None, :]
    g = self.gamma
    self.u_pos[index_p] = (1 - g) * self.u_pos[index_p] + g * pos_sur.mean(1, keepdims=True)
    self.u_all[index_p] = (1 - g) * self.u_all[index_p] + g * sur.mean(1, keepdims=True)
    p = (self.u_pos[index_p] - self.u_all[index_p] * pos_mask[None, :]) / self.u_all[index_p] ** 2
    loss = np.mean(p * sur)
    # d loss / d s with p constant: dL_ij/ds_i = -2 r_ij, dL_ij/ds_j = +2 r_ij, r = max(m - (s_i - s_j), 0).
    r = np.maximum(self.margin - (f_ps - mat), 0.0)
    w = p * 2 * r / p.size
    grad = np.zeros_like(s)
    np.add.at(grad, np.flatnonzero(pos_mask), -w.sum(1))
    grad += w.sum(0)
    return loss, grad


def state_for(n):
  return init_adap_state(n)


def call_method_loss(method, z_nat, z_adv, y, index, state, mask=None):
  """method.loss on the identity context: the batch image *is* the (B, 1) logit column."""
  ctx = h.identity_ctx(num_classes=2)
  batch = {"image": jnp.asarray(z_nat)[:, None], "label": jnp.asarray(y, jnp.int32),
           "index": jnp.asarray(index, jnp.int32)}
  if mask is not None:
    batch["mask"] = jnp.asarray(mask)
  x_adv = None if z_adv is None else jnp.asarray(z_adv)[:, None]
  value, aux = method.loss({"w": jnp.asarray(1.0, jnp.asarray(z_nat).dtype)}, {}, batch, x_adv, None, state,
                           jax.random.key(0), ctx)
  return value, aux
