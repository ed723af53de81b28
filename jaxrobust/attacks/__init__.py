"""Adversarial attacks: pure functions ``attack(logits_fn, x, y, key, **config) -> x_adv``."""

from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import attack_names, get_attack

__all__ = ["pgd", "get_attack", "attack_names"]
