"""AdAP's compositional estimators (Li, Tong, Yang 2023) as pure functions over an explicit state pytree.

SOAP AP surrogate (paper eqs. (1)-(3); code ``losses.py::AUPRC_Loss`` = LibAUC ``APLoss``)::

    s = sigmoid(z);  B+ = {i in B : y_i = 1}  (a subset of the batch B)
    L[i,j]   = max(m - (s_i - s_j), 0)^2                        i in B+, j in B   (m = ``margin`` = 0.6)
    phi1_i   = mean_j 1(y_j = 1) L[i,j],   phi2_i = mean_j L[i,j]
    P        = -(1/|B+|) sum_i phi1_i / phi2_i                  (the AP surrogate, ``direct_ap_surrogate``)
    (2) u_all[idx_i] <- (1 - g1) u_all[idx_i] + g1 sg(phi2_i);   u_pos[idx_i] <- ... sg(phi1_i)
    (3) p[i,j] = sg((u_pos[idx_i] - u_all[idx_i] 1(y_j = 1)) / u_all[idx_i]^2)
        loss_AP = mean_{i in B+, j in B} p[i,j] L[i,j]

Paper symbols -> arguments: u^1 / u^2 = ``u_pos`` / ``u_all`` (one scalar per *positive* training
example, stored in a table of shape (n_train,) indexed by the dataset index ``batch['index']``),
gamma_1 = ``gamma`` (weight of the *new* batch value; 1 = no memory), m = ``margin``. The value of
loss_AP is ~0 by construction; only its gradient (= the SOAP estimate of grad P) matters, so we
also report P itself.

Listwise regulariser (paper eqs. (8), (11), (12); code ``AdAP_LN.forward``)::

    h = tanh(z) / tau,  h' = tanh(z(x + delta)) / tau                   (tau = ``tau`` = 1)
    R  = KL(softmax(h) || softmax(h')) = g1/g2 - log g2 + log g3
    g1 = mean_i exp(h_i)(h_i - h'_i),  g2 = mean_i exp(h_i),  g3 = mean_i exp(h'_i)
    (11) u_r[k] <- (1 - g2m) u_r[k] + g2m sg(g_k)                       (three global scalars)
    (12) loss_R = g1/u_r[1] - u_r[0]/u_r[1]^2 g2 + g3/u_r[2] - g2/u_r[1]

gamma_2 = ``gamma`` of ``listwise_loss``; u_r = ``AdAPState.u_r``.

Static shapes: the matrix is the full |B| x |B| one with the non-positive rows masked out, so the
program never depends on how many positives a batch holds. The tables are written with a masked
scatter; a duplicated index inside one batch (possible when the sampler wraps around) is resolved
**last-write-wins**, as torch's ``u[index] = ...`` with repeated indices does in practice: only the
last positive row carrying an index writes it, and every row with that index then reads the written
value (the reference reads ``u[index]`` after the assignment). This is deterministic on any mesh.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.types import Array

MARGIN = 0.6


class AdAPState(NamedTuple):
  """u_all, u_pos: (n_train,) float32, the SOAP estimators of phi2 / phi1 per positive example
  (0 for examples never seen as a positive). u_r: (3,) float32, the listwise estimators of g1..g3."""
  u_all: Array
  u_pos: Array
  u_r: Array


def init_adap_state(num_examples: int, dtype=jnp.float32) -> AdAPState:
  """All estimators start at 0, as ``torch.zeros`` in the reference."""
  if num_examples < 1:
    raise ValueError(f"AdAP needs a non-empty training set to size its estimators; got {num_examples}")
  return AdAPState(u_all=jnp.zeros((num_examples,), dtype), u_pos=jnp.zeros((num_examples,), dtype),
                   u_r=jnp.zeros((3,), dtype))


def _valid(mask, b: int, dtype) -> Array:
  return jnp.ones((b,), dtype) if mask is None else mask.astype(dtype)


def squared_hinge_matrix(s: Array, margin: float = MARGIN) -> Array:
  """L[i, j] = max(m - (s_i - s_j), 0)^2 for all i, j in the batch; (B,) -> (B, B)."""
  return jnp.square(jnp.maximum(margin - (s[:, None] - s[None, :]), 0.0))


def soap_batch_means(mat: Array, y: Array, valid: Array) -> tuple[Array, Array]:
  """(phi2_i, phi1_i) per row: mean_j L[i,j] and mean_j 1(y_j=1) L[i,j] over the valid columns."""
  n = jnp.maximum(jnp.sum(valid), 1.0)
  yv = valid * (y == 1).astype(valid.dtype)
  return mat @ valid / n, mat @ yv / n


def direct_ap_surrogate(s: Array, y: Array, mask=None, margin: float = MARGIN) -> Array:
  """P = -(1/|B+|) sum_{i in B+} phi1_i / phi2_i on the batch itself (no estimators), in [-1, 0)."""
  valid = _valid(mask, s.shape[0], s.dtype)
  pos = valid * (y == 1).astype(s.dtype)
  phi2, phi1 = soap_batch_means(squared_hinge_matrix(s, margin), y, valid)
  ratio = phi1 / jnp.where(pos > 0, phi2, 1.0)
  return -jnp.sum(pos * ratio) / jnp.maximum(jnp.sum(pos), 1.0)


def last_write_mask(index: Array, write: Array) -> Array:
  """(B,) bool: row i writes and no later writing row carries the same index (last-write-wins)."""
  b = index.shape[0]
  later = jnp.arange(b)[None, :] > jnp.arange(b)[:, None]
  clash = (index[:, None] == index[None, :]) & write[None, :] & later
  return write & ~jnp.any(clash, axis=1)


def scatter_last_write(table: Array, index: Array, values: Array, write: Array) -> Array:
  """table[index[i]] = values[i] for the rows that win (``last_write_mask``), others untouched.

  Losing rows are pointed past the end and dropped, so the winning indices are unique and the
  result does not depend on XLA's (unspecified) order for duplicate scatter indices.
  """
  win = last_write_mask(index, write)
  target = jnp.where(win, index.astype(jnp.int32), table.shape[0])
  return table.at[target].set(values.astype(table.dtype), mode="drop")


def moving_average(old: Array, new: Array, gamma: float) -> Array:
  """u <- (1 - gamma) u + gamma sg(new): gamma weighs the new batch value (Li, Tong, Yang 2023, eq. 2)."""
  return (1.0 - gamma) * old + gamma * jax.lax.stop_gradient(new)


def _soap_weights(u_pos_rows, u_all_rows, y, pos):
  """p[i, j] = sg((u_pos_i - u_all_i 1(y_j=1)) / u_all_i^2); rows that are not positives get 0."""
  ua = jnp.where(pos > 0, u_all_rows, 1.0)  # non-positive rows may hold 0: keep them finite
  p = (u_pos_rows[:, None] - ua[:, None] * (y == 1).astype(ua.dtype)[None, :]) / jnp.square(ua)[:, None]
  return jax.lax.stop_gradient(p * (pos > 0)[:, None])


def _pair_mean(values: Array, pos: Array, valid: Array) -> Array:
  """mean over the |B+| x |B| entries (torch.mean of the positive-row matrix)."""
  n_pos = jnp.maximum(jnp.sum(pos), 1.0)
  n = jnp.maximum(jnp.sum(valid), 1.0)
  return jnp.sum(values * pos[:, None] * valid[None, :]) / (n_pos * n)


def soap_loss(s: Array, y: Array, index: Array, u_all: Array, u_pos: Array, *, gamma: float,
              margin: float = MARGIN, mask=None) -> tuple[Array, tuple[Array, Array]]:
  """loss_AP (eq. 3) on scores s = sigmoid(z) and the updated tables (eq. 2).

  s: (B,) float; y: (B,) {0,1}; index: (B,) int dataset rows; u_all/u_pos: (n_train,) tables;
  mask: optional (B,) 1 for real rows (padding rows are neither anchors nor columns).
  Returns (loss_AP, (u_all', u_pos')). grad loss_AP = SOAP's estimate of grad P.
  """
  valid = _valid(mask, s.shape[0], s.dtype)
  pos = valid * (y == 1).astype(s.dtype)
  mat = squared_hinge_matrix(s, margin)
  phi2, phi1 = soap_batch_means(jax.lax.stop_gradient(mat), y, valid)
  new_all = moving_average(u_all[index], phi2, gamma)
  new_pos = moving_average(u_pos[index], phi1, gamma)
  write = pos > 0
  u_all = scatter_last_write(u_all, index, new_all, write)
  u_pos = scatter_last_write(u_pos, index, new_pos, write)
  # Read back after the write, like the reference: duplicated rows see the surviving value.
  p = _soap_weights(u_pos[index], u_all[index], y, pos)
  return _pair_mean(p * mat, pos, valid), (u_all, u_pos)


def ap_attack_loss(u_all_rows: Array, u_pos_rows: Array, *, gamma: float, margin: float = MARGIN,
                   mask=None):
  """AdAP_MM inner maximisation (``AUPRC_Loss.attack_fn``), as a PGD loss ``(logits, y, ref) -> (B,)``.

  At every attack step the weights come from *temporary* estimators
  u_tmp_i = (1 - g1) u_stored[idx_i] + g1 sg(phi_i(s(x + delta))) that are never stored
  (``u_all_rows`` / ``u_pos_rows`` = u_stored[batch index]). Row i returns its share
  sum_j p[i,j] L[i,j] / (|B+| |B|), so the sum PGD differentiates is mean_{B+ x B}(p * L).
  """
  def loss(logits, y, ref_logits=None):
    s = jax.nn.sigmoid(single_logit(logits))
    valid = _valid(mask, s.shape[0], s.dtype)
    pos = valid * (y == 1).astype(s.dtype)
    mat = squared_hinge_matrix(s, margin)
    phi2, phi1 = soap_batch_means(jax.lax.stop_gradient(mat), y, valid)
    p = _soap_weights(moving_average(u_pos_rows, phi1, gamma), moving_average(u_all_rows, phi2, gamma), y, pos)
    n_pos = jnp.maximum(jnp.sum(pos), 1.0)
    n = jnp.maximum(jnp.sum(valid), 1.0)
    return pos * ((p * mat) @ valid) / (n_pos * n)
  return losses_lib.AttackLoss(loss, needs_reference=False)


# -------------------------------------------------------------------------------------------
# Listwise top-one-probability regulariser
# -------------------------------------------------------------------------------------------

def top_one_scores(z: Array, tau: float = 1.0) -> Array:
  """h = tanh(z) / tau: the bounded scores of the top-one probabilities p_t = softmax(h)."""
  return jnp.tanh(single_logit(z)) / tau


def listwise_batch_means(h: Array, h_adv: Array, mask=None) -> Array:
  """(g1, g2, g3) over the batch: mean exp(h)(h - h'), mean exp(h), mean exp(h')."""
  valid = _valid(mask, h.shape[0], h.dtype)
  n = jnp.maximum(jnp.sum(valid), 1.0)
  e, e_adv = jnp.exp(h), jnp.exp(h_adv)
  return jnp.stack([jnp.sum(valid * e * (h - h_adv)), jnp.sum(valid * e), jnp.sum(valid * e_adv)]) / n


def listwise_kl(h: Array, h_adv: Array, mask=None) -> Array:
  """R = g1/g2 - log g2 + log g3 = KL(softmax(h) || softmax(h')) over the batch (eq. 8)."""
  g = listwise_batch_means(h, h_adv, mask)
  return g[0] / g[1] - jnp.log(g[1]) + jnp.log(g[2])


def listwise_loss(h: Array, h_adv: Array, u_r: Array, *, gamma: float, mask=None) -> tuple[Array, Array]:
  """loss_R (eq. 12) with the estimators updated first (eq. 11); returns (loss_R, u_r').

  Both branches keep their gradients (TRADES-style); only the u's are constants.
  """
  g = listwise_batch_means(h, h_adv, mask)
  u = moving_average(u_r, g, gamma)
  loss = g[0] / u[1] - u[0] / jnp.square(u[1]) * g[1] + g[2] / u[2] - g[1] / u[1]
  return loss, u


def listwise_attack_loss(u_r: Array, *, gamma: float, tau: float = 1.0, mask=None):
  """AdAP_LZ inner maximisation (``AdAP_LN.attack_fn`` via ``ranking_attack_v1``) as a PGD loss.

  Per step, from the stored u_r (never written): u_d1 = (1-g2m) u_r[1] + g2m mean exp(h),
  u_d2 = (1-g2m) u_r[2] + g2m mean exp(h'); objective mean_i sg(-exp(h_i)/u_d1) h'_i +
  mean_i sg(exp(h'_i)/u_d2) h'_i, whose gradient in h'_i is (1/|B|)(-exp(h_i)/u_d1 + exp(h'_i)/u_d2),
  the stochastic grad_{h'} R. h comes from the clean logits (PGD's reference logits, computed once
  in inference mode; the reference recomputes them every step with the same result). Labels unused
  (the released code's ``TypeError`` on this path is the bug we do not reproduce).
  """
  def loss(logits, y, ref_logits):
    h = jax.lax.stop_gradient(top_one_scores(ref_logits, tau))
    h_adv = top_one_scores(logits, tau)
    valid = _valid(mask, h.shape[0], h.dtype)
    n = jnp.maximum(jnp.sum(valid), 1.0)
    e, e_adv = jnp.exp(h), jnp.exp(h_adv)
    u_d1 = moving_average(u_r[1], jnp.sum(valid * e) / n, gamma)
    u_d2 = moving_average(u_r[2], jnp.sum(valid * e_adv) / n, gamma)
    w = jax.lax.stop_gradient(-e / u_d1 + e_adv / u_d2)
    return valid * w * h_adv / n
  return losses_lib.AttackLoss(loss, needs_reference=True)


def single_logit(logits: Array) -> Array:
  """(B,) or (B, 1) single logit -> (B,); anything else is a configuration error."""
  if logits.ndim == 2 and logits.shape[1] == 1:
    return logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(f"AdAP needs a single-logit model (model.head='single_logit'); got logits of shape "
                     f"{logits.shape}")
  return logits
