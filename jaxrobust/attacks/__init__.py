"""Adversarial attacks: pure functions ``attack(logits_fn, x, y, key, **config) -> x_adv``."""

from jaxrobust.attacks.pgd import pgd

__all__ = ["pgd"]
