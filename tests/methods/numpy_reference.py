"""Independent NumPy (float64) transcriptions of the reference PyTorch code, for the method tests.

Each function follows the reference code line by line (argsort / topk / index subsetting where the
code does that), not the JAX implementation, so agreement is a real check. Logits are (B, K).
"""

from __future__ import annotations

import numpy as np


def softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
  z = np.asarray(z, np.float64)
  m = z.max(axis=1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def cross_entropy(z, y):
  """Per-example -log softmax(z)_y."""
  return -log_softmax(z)[np.arange(len(y)), y]


def kl_div_none(log_input, target):
  """torch ``KLDivLoss(reduction='none')(log_input, target)``: target (log target - log_input),
  0 where target = 0."""
  with np.errstate(divide="ignore", invalid="ignore"):
    out = target * (np.log(target) - log_input)
  return np.where(target > 0, out, 0.0)


# ------------------------------------------------------------------------------------------
# TRADES (trades.py::trades_loss), PGD-AT
# ------------------------------------------------------------------------------------------

def trades_loss(z_nat, z_adv, y, beta):
  b = len(y)
  natural = cross_entropy(z_nat, y).mean()
  robust = (1.0 / b) * kl_div_none(log_softmax(z_adv), softmax(z_nat)).sum()
  return natural + beta * robust, natural, robust


def pgd_at_loss(z_nat, z_adv, y, mix):
  return (1 - mix) * cross_entropy(z_nat, y).mean() + mix * cross_entropy(z_adv, y).mean()


# ------------------------------------------------------------------------------------------
# MART (mart.py::mart_loss)
# ------------------------------------------------------------------------------------------

def mart_new_y(adv_probs, y):
  tmp1 = np.argsort(adv_probs, axis=1)[:, -2:]
  return np.where(tmp1[:, -1] == y, tmp1[:, -2], tmp1[:, -1])


def mart_parts(z_nat, z_adv, y, bce_on="adv"):
  """Per-example (BCE_i, KL_i * (1.0000001 - p_y)) exactly as mart_loss builds them."""
  b = len(y)
  z_bce = z_adv if bce_on == "adv" else z_nat
  bce_probs = softmax(z_bce)
  new_y = mart_new_y(bce_probs, y)
  bce = cross_entropy(z_bce, y) - np.log(1.0001 - bce_probs + 1e-12)[np.arange(b), new_y]
  adv_probs = softmax(z_adv)
  nat_probs = softmax(z_nat)
  true_probs = nat_probs[np.arange(b), y]
  kl = kl_div_none(np.log(adv_probs + 1e-12), nat_probs).sum(axis=1)
  return bce, kl * (1.0000001 - true_probs)


def mart_loss(z_nat, z_adv, y, beta, bce_on="adv"):
  bce, rob = mart_parts(z_nat, z_adv, y, bce_on)
  return bce.mean() + beta * rob.mean(), bce.mean(), rob.mean()


# ------------------------------------------------------------------------------------------
# GAIRAT (GAIR.py::GAIR, attack_generator.py::GA_PGD) and FAT (earlystop.py)
# ------------------------------------------------------------------------------------------

def gair(num_steps, kappa, lam, func):
  kappa = np.asarray(kappa, np.float64)
  h = int(num_steps / 2)
  if func == "tanh":
    w = (np.tanh(lam + (h - kappa) * 5 / h) + 1) / 2
  elif func == "sigmoid":
    w = 1 / (1 + np.exp(-(lam + (h - kappa) * 5 / h)))
  else:
    w = ((num_steps + 1) - kappa) / (num_steps + 1)
  return w * len(w) / w.sum()


def linear_logits(x, w, b):
  return x.reshape(len(x), -1) @ w + b


def linear_ce_grad(x, y, w, b):
  """d/dx sum_i CE(x_i W + b, y_i) = (p - onehot(y)) W^T."""
  p = softmax(linear_logits(x, w, b))
  p[np.arange(len(y)), y] -= 1.0
  return (p @ w.T).reshape(x.shape)


def ga_pgd_linear(x, y, x0, w, b, eps, step, steps):
  """GA_PGD on a linear softmax model from start x0: returns (x_adv, kappa)."""
  x_adv = x0.copy()
  kappa = np.zeros(len(x))
  for _ in range(steps):
    pred = linear_logits(x_adv, w, b).argmax(1)
    for p in range(len(x_adv)):
      if pred[p] == y[p]:
        kappa[p] += 1
    g = linear_ce_grad(x_adv, y, w, b)
    x_adv = x_adv + step * np.sign(g)
    x_adv = np.minimum(np.maximum(x_adv, x - eps), x + eps)
    x_adv = np.clip(x_adv, 0.0, 1.0)
  return x_adv, kappa


def earlystop_linear(x, y, x0, w, b, eps, step, steps, tau):
  """FAT's earlystop (omega = 0) with its index bookkeeping; returns x_adv in the input order."""
  k = steps
  control = np.full(len(y), float(tau))
  idx_all = np.arange(len(y))            # original positions of the examples still iterated
  iter_adv = x0.copy()
  iter_clean = x.copy()
  iter_target = y.copy()
  out = np.zeros_like(x)
  while k > 0:
    pred = linear_logits(iter_adv, w, b).argmax(1)
    output_index, iter_index = [], []
    for i in range(len(pred)):
      if pred[i] != iter_target[i]:
        if control[i] == 0:
          output_index.append(i)
        else:
          control[i] -= 1
          iter_index.append(i)
      else:
        iter_index.append(i)
    for i in output_index:
      out[idx_all[i]] = iter_adv[i]
    grad = linear_ce_grad(iter_adv, iter_target, w, b)
    if not iter_index:
      return out
    control, iter_adv = control[iter_index], iter_adv[iter_index]
    iter_clean, iter_target = iter_clean[iter_index], iter_target[iter_index]
    idx_all, grad = idx_all[iter_index], grad[iter_index]
    iter_adv = iter_adv + step * np.sign(grad)
    iter_adv = np.minimum(np.maximum(iter_adv, iter_clean - eps), iter_clean + eps)
    iter_adv = np.clip(iter_adv, 0, 1)
    k -= 1
  out[idx_all] = iter_adv
  return out


# ------------------------------------------------------------------------------------------
# MAIL (mail_loss.py)
# ------------------------------------------------------------------------------------------

def pm_code(z, y):
  """mail_loss.py::PM (top-2 construction): p_2nd - p_GT = -PM."""
  p = softmax(z)
  k = p.shape[1]
  probs_gt = (p * np.eye(k)[y]).sum(1)
  top2_idx = np.argsort(-p, axis=1, kind="stable")[:, :2]
  top2_val = np.take_along_axis(p, top2_idx, axis=1)
  gt_in_top2 = (top2_idx == y[:, None]).sum(1) == 1
  probs_2nd = np.where(gt_in_top2, top2_val.sum(1) - probs_gt, top2_val[:, 0])
  return probs_2nd - probs_gt


def mail_weights(pm, slope, bias, norm="code"):
  """Weights from PM (paper sign); code: sigmoid((pm_code + bias) slope) * 3 with pm_code = -PM."""
  w = 1 / (1 + np.exp(-((-pm + bias) * slope)))
  if norm == "code":
    return 3 * w
  return len(w) * w / w.sum()


def mail_loss(z_nat, z_adv, y, base, beta, slope, bias, norm="code"):
  b = len(y)
  omega = mail_weights(-pm_code(z_adv, y), slope, bias, norm)
  if base == "at":
    return (cross_entropy(z_adv, y) * omega).mean()
  if base == "trades":
    natural = cross_entropy(z_nat, y).mean()
    robust = (1.0 / b) * (kl_div_none(log_softmax(z_adv), softmax(z_nat)).sum(1) * omega).sum()
    return natural + beta * robust
  bce, rob = mart_parts(z_nat, z_adv, y)
  return (bce * omega).mean() + beta * rob.mean()


# ------------------------------------------------------------------------------------------
# SPAT (spat.py)
# ------------------------------------------------------------------------------------------

def spat_sp_logits(c, y, s, m):
  mask = np.eye(c.shape[1])[y]
  alpha_p = (1 + m - c) * mask
  alpha_n = (c + m) * (1 - mask)
  return s * (alpha_p * c + alpha_n * c)


def spat_kl_loss(c, c_adv, s, n):
  b = len(c)
  p = softmax(s * c)
  q = softmax(s * c_adv)
  kl = kl_div_none(np.log(q), p)
  return (1.0 / b) * np.sum(np.sum(kl * (kl + n), axis=1))


def spat_loss(c, c_adv, y, s, m, n, beta):
  l_acc = cross_entropy(spat_sp_logits(c, y, s, m), y).mean()
  l_rob = spat_kl_loss(c, c_adv, s, n)
  return l_acc + beta * l_rob, l_acc, l_rob


# ------------------------------------------------------------------------------------------
# ALP, AWP
# ------------------------------------------------------------------------------------------

def alp_loss(z_nat, z_adv, y, mix, lam, pairing="sum"):
  sq = (z_nat - z_adv) ** 2
  pair = sq.sum(1) if pairing == "sum" else sq.mean(1)
  return ((1 - mix) * cross_entropy(z_nat, y).mean() + mix * cross_entropy(z_adv, y).mean()
          + lam * pair.mean())


def awp_diff(w_old, w_proxy, gamma):
  """utils_awp.py::diff_in_weights times gamma: gamma ||w|| (w' - w) / (||w' - w|| + 1e-20)."""
  d = w_proxy - w_old
  return gamma * np.linalg.norm(w_old) / (np.linalg.norm(d) + 1e-20) * d


def supcon_loss(features, labels, temperature, base_temperature=None):
  """Khosla et al. 2020 ``SupConLoss`` (contrast_mode='all') on features (B, V, D), L2-normalised
  inside, as ``HobbitLong/SupContrast/losses.py`` computes it."""
  base_temperature = temperature if base_temperature is None else base_temperature
  f = features / np.linalg.norm(features, axis=-1, keepdims=True)
  b, v, _ = f.shape
  contrast = np.concatenate([f[:, i] for i in range(v)])  # torch.cat(torch.unbind(features, 1))
  logits = contrast @ contrast.T / temperature
  logits = logits - logits.max(1, keepdims=True)
  lab = np.tile(labels, v)
  mask = (lab[:, None] == lab[None, :]).astype(float)
  logits_mask = 1.0 - np.eye(b * v)
  mask = mask * logits_mask
  log_prob = logits - np.log((np.exp(logits) * logits_mask).sum(1, keepdims=True))
  mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
  return float((-(temperature / base_temperature) * mean_log_prob_pos).mean())
