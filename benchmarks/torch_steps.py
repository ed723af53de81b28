"""PyTorch attack and train steps as the reference code writes them, for side-by-side timing.

* ``pgd_linf``: the eager loop of torchattacks' ``PGD`` (Kim 2020, v3.5): uniform random start,
  mean CE, ``autograd.grad`` w.r.t. the input only, sign step, clamp to the ball then to [0, 1]
  (the PGD of Madry et al. 2018).
* ``pgd_at_step`` / ``trades_step``: one PGD-AT (Madry et al. 2018) or TRADES (Zhang et al. 2019,
  ``yaodongyu/TRADES``'s ``trades_loss``) train step: ``model.eval()`` during the attack,
  ``model.train()`` for the update, ``torch.optim.SGD`` with momentum and coupled weight decay
  (``make_sgd``).
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


def thread_info() -> dict:
  """torch's thread settings, for a benchmark's machine record."""
  torch = require_torch()
  return {"torch_num_threads": torch.get_num_threads(),
          "torch_num_interop_threads": torch.get_num_interop_threads(),
          "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}
