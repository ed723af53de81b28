"""PyTorch attack and train steps as the reference code writes them, for side-by-side timing.

* ``pgd_linf``: the eager loop of torchattacks' ``PGD`` (Kim 2020, v3.5): uniform random start,
  mean CE, ``autograd.grad`` w.r.t. the input only, sign step, clamp to the ball then to [0, 1]
  (the PGD of Madry et al. 2018).
* ``pgd_at_step`` / ``trades_step``: one PGD-AT (Madry et al. 2018) or TRADES (Zhang et al. 2019,
  ``yaodongyu/TRADES``'s ``trades_loss``) train step: ``model.eval()`` during the attack,
  ``model.train()`` for the update, ``torch.optim.SGD`` with momentum and coupled weight decay
  (``make_sgd``).
* The ADR (Bui et al. 2020) and ASCL (Bui et al. 2021) losses as the authors' PyTorch code computes
  them (``tuananhbui89/ASCL``: ``compact_loss_pt.py``, ``adr.py::adr_trades`` / ``adr_pgd``,
  ``contrastive_losses_v2.py::soft_lcscl``, ``distance.py``, ``ascl.py::ascl_pgd``; transcribed in
  ``shared/spec/adr_ascl.md`` sections 2.2 and 3.3), restated here for the cross-check
  ``tests/methods/test_adr_ascl_torch.py`` and the benchmark rows ``adr_trades`` / ``ascl``:
  ``adr_*`` terms and ``adr_loss`` totals, ``ascl_soft_lcscl`` and ``ascl_loss``, and the train
  steps ``adr_trades_step`` / ``ascl_step``.
"""

from __future__ import annotations

from benchmarks.torch_models import require_torch


def pgd_linf(model, x, y, *, eps: float, step_size: float, steps: int, random_start: bool = True):
  """torchattacks ``PGD.forward`` (v3.5), inlined: returns x_adv (NCHW).

  Runs the model in whatever mode it is in (torchattacks does not switch it either).
  """
  torch = require_torch()
  loss_fn = torch.nn.CrossEntropyLoss()
  x = x.clone().detach()
  y = y.clone().detach()
  adv = x.clone().detach()
  if random_start:
    adv = adv + torch.empty_like(adv).uniform_(-eps, eps)
    adv = torch.clamp(adv, min=0, max=1).detach()
  for _ in range(steps):
    adv.requires_grad = True
    cost = loss_fn(model(adv), y)
    grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
    adv = adv.detach() + step_size * grad.sign()
    delta = torch.clamp(adv - x, min=-eps, max=eps)
    adv = torch.clamp(x + delta, min=0, max=1).detach()
  return adv


def make_sgd(model, *, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
  """torch.optim.SGD with coupled L2 weight decay on every parameter (the reference scripts')."""
  torch = require_torch()
  return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def pgd_at_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int):
  """One Madry PGD-AT step: PGD in eval mode, then CE on x_adv in train mode. Returns the loss."""
  torch = require_torch()
  model.eval()
  x_adv = pgd_linf(model, x, y, eps=eps, step_size=step_size, steps=steps, random_start=True)
  model.train()
  optimizer.zero_grad()
  loss = torch.nn.functional.cross_entropy(model(x_adv), y)
  loss.backward()
  optimizer.step()
  return loss.detach()


def trades_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int, beta: float = 6.0):
  """One ``yaodongyu/TRADES`` ``trades_loss`` step + SGD update. Returns the loss.

  loss = CE(f(x), y) + beta / B * sum_i KL(softmax f(x_i) || softmax f(x_adv_i)), the TRADES
  objective (Zhang et al. 2019) as the reference code computes it.
  Deviation, for a like-for-like comparison: the reference recomputes ``softmax(model(x))`` in
  eval mode inside every attack step; its value never changes, so it is computed once here (as
  jaxrobust does). The update forwards x and x_adv in train mode once each, as jaxrobust does
  (the reference forwards x a second time for the KL target; the output is identical).
  """
  torch = require_torch()
  F = torch.nn.functional
  model.eval()
  with torch.no_grad():
    p_nat = F.softmax(model(x), dim=1)
  x_adv = x.detach() + 0.001 * torch.randn_like(x)
  for _ in range(steps):
    x_adv.requires_grad_()
    loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_nat, reduction="sum")
    grad = torch.autograd.grad(loss_kl, [x_adv])[0]
    x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
  model.train()
  x_adv = x_adv.detach()
  optimizer.zero_grad()
  logits = model(x)
  loss_natural = F.cross_entropy(logits, y)
  loss_robust = (1.0 / x.shape[0]) * F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                                              reduction="sum")
  loss = loss_natural + beta * loss_robust
  loss.backward()
  optimizer.step()
  return loss.detach()


# ----------------------------------------------------------------------------------------
# ADR (Bui et al. 2020): compact_loss_pt.py and adr.py of the ASCL repository
# ----------------------------------------------------------------------------------------

def adr_compact_loss(z, z_adv, pairwise: bool):
  """``compact_loss``: mean over latent dims of |sg(z) - z'|: (B,) per example, or (B, B) with
  [i, j] = mean|sg(z_j) - z'_i| (adversarial i against clean j, diagonal included)."""
  torch = require_torch()
  if pairwise:
    z, z_adv = z.unsqueeze(0), z_adv.unsqueeze(1)  # [1, B, k], [B, 1, k]
  return torch.mean(torch.abs(z.detach() - z_adv), dim=-1)


def adr_label_weight(y, num_classes: int, scale: float = 0.99, dtype=None):
  """``label_weight(pairwise=True)``: D_ij = ||onehot y_i - onehot y_j||_1, W = (scale - D / max D) / scale.

  dtype: of the one-hot labels and W (default torch's default float32, as the code's FloatTensor).
  As the code: a batch of one class gives max D = 0 and W = 0/0 = NaN (jaxrobust sets W = 1 there).
  """
  torch = require_torch()
  onehot = torch.nn.functional.one_hot(y, num_classes).to(dtype or torch.get_default_dtype())
  d = torch.sum(torch.abs(onehot.unsqueeze(0) - onehot.unsqueeze(1)), dim=-1)  # [B, B]
  d = d / torch.max(d)
  return (scale - d) / scale


def _soft_xent(logits, target_logits):
  """``mysoftmax_cross_entropy_with_two_logits(logits, labels=target_logits, 'none')``:
  -sum_c softmax(target)_c log softmax(logits)_c, per row (no detach here: callers detach)."""
  torch = require_torch()
  F = torch.nn.functional
  return torch.sum(-F.log_softmax(logits, dim=1) * F.softmax(target_logits, dim=1), dim=1)


def adr_smooth_loss(logits, logits_adv, pairwise: bool):
  """``smooth_loss``: CE(softmax(sg l), l') per example (B,), or (B, B) with [i, j] = CE(softmax(sg l_j), l'_i)."""
  if not pairwise:
    return _soft_xent(logits_adv, logits.detach())
  b, c = logits.shape
  lab = logits.detach().unsqueeze(0).repeat_interleave(b, dim=0)  # [i, j] = l_j
  adv = logits_adv.unsqueeze(1).repeat_interleave(b, dim=1)  # [i, j] = l'_i
  return _soft_xent(adv.reshape(b * b, c), lab.reshape(b * b, c)).reshape(b, b)


def adr_terms(y, z, logits, z_adv, logits_adv, num_classes: int, scale: float = 0.99) -> dict:
  """``local_loss`` + ``global_loss`` + the confidence term of ``adr.py``: lc_com, lc_smt, gb_com,
  gb_smt (means; the label weights detached) and conf = mean H(softmax l') (gradient through both factors)."""
  torch = require_torch()
  w = adr_label_weight(y, num_classes, scale, dtype=z.dtype).detach()
  return {"lc_com": torch.mean(adr_compact_loss(z, z_adv, False)),
          "lc_smt": torch.mean(adr_smooth_loss(logits, logits_adv, False)),
          "gb_com": torch.mean(w * adr_compact_loss(z, z_adv, True)),
          "gb_smt": torch.mean(w * adr_smooth_loss(logits, logits_adv, True)),
          "conf": torch.mean(_soft_xent(logits_adv, logits_adv))}


def adr_loss(y, z, logits, z_adv, logits_adv, *, base: str = "trades", alpha: float = 1.0, beta: float = 1.0,
             lccomw: float = 1.0, lcsmtw: float = 1.0, gbcomw: float = 1.0, gbsmtw: float = 0.0,
             confw: float = 0.0, scale: float = 0.99):
  """The total of ``adr.py::adr_trades`` (base 'trades': alpha CE(l, y) + beta (1/B) sum KL(p || p'))
  or ``adr_pgd`` (base 'adv': alpha CE(l, y) + beta CE(l', y)) plus lccomw L_lc + lcsmtw L_vat +
  gbcomw L_gb + gbsmtw L_gbsmt + confw L_conf; a zero weight drops its term (``utils.add_loss``).
  Returns (loss, terms). Defaults: ADR_pt's weights with gbsmt and conf off (jaxrobust's defaults)."""
  torch = require_torch()
  F = torch.nn.functional
  natural = F.cross_entropy(logits, y)
  if base == "trades":
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="sum") / len(y)
  elif base == "adv":
    robust = F.cross_entropy(logits_adv, y)
  else:
    raise ValueError(f"base must be 'trades' or 'adv'; got {base!r}")
  terms = adr_terms(y, z, logits, z_adv, logits_adv, logits.shape[1], scale)
  loss = alpha * natural + beta * robust
  for name, w in (("lc_com", lccomw), ("lc_smt", lcsmtw), ("gb_com", gbcomw), ("gb_smt", gbsmtw),
                  ("conf", confw)):
    if w != 0:
      loss = loss + w * terms[name]
  return loss, dict(terms, natural=natural, robust=robust)


def adr_trades_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int, beta: float = 1.0,
                    lccomw: float = 1.0, lcsmtw: float = 1.0, gbcomw: float = 1.0, gbsmtw: float = 0.0,
                    confw: float = 0.0):
  """One ADR-TRADES step (``adr.py::adr_trades``) + SGD update. Returns the loss.

  The adversary is ``trades_step``'s (KL from x + 0.001 N(0, I), eval mode as ADR_pt and jaxrobust's
  default ``attack_bn='eval'``; the ASCL repository's copy attacks in train mode); the update
  forwards x and x_adv in train mode with their penultimate features.
  """
  torch = require_torch()
  F = torch.nn.functional
  model.eval()
  with torch.no_grad():
    p_nat = F.softmax(model(x), dim=1)
  x_adv = x.detach() + 0.001 * torch.randn_like(x)
  for _ in range(steps):
    x_adv.requires_grad_()
    loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_nat, reduction="sum")
    grad = torch.autograd.grad(loss_kl, [x_adv])[0]
    x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
  model.train()
  x_adv = x_adv.detach()
  optimizer.zero_grad()
  logits, z = model(x, return_features=True)
  logits_adv, z_adv = model(x_adv, return_features=True)
  loss, _ = adr_loss(y, z, logits, z_adv, logits_adv, base="trades", beta=beta, lccomw=lccomw, lcsmtw=lcsmtw,
                     gbcomw=gbcomw, gbsmtw=gbsmtw, confw=confw)
  loss.backward()
  optimizer.step()
  return loss.detach()


# ----------------------------------------------------------------------------------------
# ASCL (Bui et al. 2021): contrastive_losses_v2.py, distance.py and ascl.py
# ----------------------------------------------------------------------------------------

ASCL_LARGE_NUM = 1e9


def ascl_distance(h, dist: str):
  """``distance(h, h, dist, pairwise=True)``: (M, M), [i, j] = dist(h_j, h_i)."""
  torch = require_torch()
  x, y = h.unsqueeze(0), h.unsqueeze(1)
  if dist == "l2":
    return torch.sqrt(torch.sum(torch.square(x - y), dim=-1))
  if dist == "l1":
    return torch.sum(torch.abs(x - y), dim=-1)
  if dist == "linf":
    return torch.max(torch.abs(x - y), dim=-1)[0]
  if dist == "lkinf":
    return torch.sum(torch.topk(torch.abs(x - y), k=10, dim=-1)[0], dim=-1) / 10
  if dist == "cosine":
    return 0 - torch.cosine_similarity(x, y, dim=-1)
  if dist == "matmul":
    return -torch.matmul(h, h.T)
  raise ValueError(f"unknown distance {dist!r}")


def ascl_soft_lcscl(hidden, labels, preds, dist: str, neg_type: str, hidden_norm: bool = True,
                    temperature: float = 0.07):
  """``soft_lcscl``: hidden (2N, d), labels and preds one-hot (2N, C), all in the caller's dtype (the
  code passes float64). Masks as spec 3.3: SY = Y Y^T, SP = P P^T; pos_all = SY with a zero diagonal,
  neg_all = 1 - SY; hard = neg_all * (Y P^T); soft = neg_all * SP; for 'leaking' positives and
  negatives are the same-prediction ones. Logits -dist / tau - 1e9 I - 1e9 illegal, log_softmax,
  loss_a = -sum(pos * logp) / max(#pos, 1), mean over the 2N anchors."""
  torch = require_torch()
  F = torch.nn.functional
  if dist in ("matmul", "l1", "l2"):
    assert hidden_norm is True
  elif dist == "cosine":
    assert hidden_norm is False
  if hidden_norm:
    hidden = F.normalize(hidden, p=2, dim=-1)
  m = hidden.shape[0]

  def no_diag(a):
    return a.clone().fill_diagonal_(0)
  sy, sp = labels @ labels.T, preds @ preds.T
  same_preds, same_labels = no_diag(sp), no_diag(sy)
  diff_labels = torch.ones_like(sy) - sy
  spsl, spdl = same_preds * same_labels, same_preds * diff_labels
  pos_mask, neg_mask = same_labels, diff_labels
  hard_neg = neg_mask * (labels @ preds.T)
  soft_neg = neg_mask * sp
  merge = torch.minimum(hard_neg + soft_neg, torch.ones_like(hard_neg))
  zeros = torch.zeros_like(neg_mask)
  if neg_type == "all":
    illegal = zeros
  elif neg_type == "hard":
    illegal = torch.maximum(neg_mask - hard_neg, zeros)
  elif neg_type == "soft":
    illegal = torch.maximum(neg_mask - soft_neg, zeros)
  elif neg_type == "merge":
    illegal = torch.maximum(neg_mask - merge, zeros)
  elif neg_type == "leaking":
    illegal = torch.maximum(torch.ones_like(spsl) - spsl - spdl, zeros)
  else:
    raise ValueError(f"unknown neg_type {neg_type!r}")
  eye = F.one_hot(torch.arange(m), num_classes=m).to(hidden.dtype)
  sim = -ascl_distance(hidden, dist) / temperature
  logprobs = F.log_softmax(sim - eye * ASCL_LARGE_NUM - ASCL_LARGE_NUM * illegal, dim=1)
  pos = spsl if neg_type == "leaking" else pos_mask
  loss = -torch.sum(pos * logprobs, dim=-1)
  nb_pos = torch.maximum(torch.sum(pos, dim=-1), torch.ones_like(loss))
  return torch.mean(loss / nb_pos, dim=0)


def ascl_loss(y, z, logits, z_adv, logits_adv, *, dist: str = "linf", neg_type: str = "leaking",
              temperature: float = 0.07, hidden_norm: bool = True, alpha: float = 1.0, beta: float = 1.0,
              gbcomw: float = 1.0, lcsmtw: float = 2.0):
  """The total of ``ascl.py::ascl_pgd``: gbcomw L_SCL (float64, as the code) + lcsmtw
  KLDivLoss(reduction='mean')(log_softmax l', softmax l) (= (1/(N C)) sum KL(p || p'), no detach) +
  alpha CE(l, y) + beta CE(l', y) (lccomw = gbsmtw = confw = 0, as the code asserts). Returns
  (loss, terms); the loss is float64 (the SCL term is), as in the code."""
  torch = require_torch()
  F = torch.nn.functional
  c = logits.shape[1]
  natural = F.cross_entropy(logits, y)
  robust = F.cross_entropy(logits_adv, y)
  preds = torch.cat([F.one_hot(torch.argmax(logits, dim=-1), c), F.one_hot(torch.argmax(logits_adv, dim=-1), c)])
  labels = torch.cat([F.one_hot(y, c), F.one_hot(y, c)])
  scl = ascl_soft_lcscl(torch.cat([z, z_adv]).double(), labels.double(), preds.double(), dist, neg_type,
                        hidden_norm, temperature)
  vat = torch.nn.KLDivLoss(reduction="mean")(F.log_softmax(logits_adv, dim=-1), F.softmax(logits, dim=-1))
  loss = gbcomw * scl
  for term, w in ((vat, lcsmtw), (natural, alpha), (robust, beta)):
    if w != 0:
      loss = loss + term * w
  return loss, {"scl": scl, "vat": vat, "natural": natural, "robust": robust}


def ascl_step(model, optimizer, x, y, *, eps: float, step_size: float, steps: int, dist: str = "cosine",
              neg_type: str = "leaking", temperature: float = 0.07, hidden_norm: bool = False,
              alpha: float = 1.0, beta: float = 1.0, gbcomw: float = 1.0, lcsmtw: float = 2.0):
  """One ASCL-ADV step (``ascl.py::ascl_pgd``) + SGD update. Returns the loss.

  The adversary is ``pgd_at_step``'s (torchattacks' PGD, uniform start, eval mode as jaxrobust's default
  ``attack_bn='eval'``; the ASCL repository attacks in train mode); the update forwards x and x_adv
  in train mode with their penultimate features. Defaults are the thesis's Leaked-ASCL (cosine,
  tau 0.07, alpha 1, lambda_VAT 2), with the code's loss (its own counterpart only when both
  predictions agree, KL / C).
  """
  model.eval()
  x_adv = pgd_linf(model, x, y, eps=eps, step_size=step_size, steps=steps, random_start=True)
  model.train()
  optimizer.zero_grad()
  logits, z = model(x, return_features=True)
  logits_adv, z_adv = model(x_adv, return_features=True)
  loss, _ = ascl_loss(y, z, logits, z_adv, logits_adv, dist=dist, neg_type=neg_type, temperature=temperature,
                      hidden_norm=hidden_norm, alpha=alpha, beta=beta, gbcomw=gbcomw, lcsmtw=lcsmtw)
  loss.backward()
  optimizer.step()
  return loss.detach()


def thread_info() -> dict:
  """torch's thread settings, for a benchmark's machine record."""
  torch = require_torch()
  return {"torch_num_threads": torch.get_num_threads(),
          "torch_num_interop_threads": torch.get_num_interop_threads(),
          "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}
