"""Adversarial attacks: pure functions ``attack(logits_fn, x, y, key, **config) -> x_adv``.

Each attack lives in its own module (``jaxrobust.attacks.pgd``, ``.fgsm``, ``.mim``, ``.cw``,
``.lm_pgd``, ``.apgd``, ``.fab``, ``.square``, ``.spsa``, ``.deepfool``, ``.ead``, ``.fmn``, ``.ddn``,
``.multi_targeted``, ``.transfer_family``, ``.autoattack``, ``.eot``, ``.universal``, ``.moo`` with its
weight solvers in ``.moo_weights``); ``get_attack(name, **config)``
returns a configured attack by name (``target=`` gives any attack with a ``targeted`` option its targets:
``targets.py``; EoT transformations: ``transforms.py``) and ``attack_names()`` lists them (``registry.py``: each module
declares its attacks' metadata in a ``REGISTRY`` of ``AttackInfo``). What the attacks share lives in
two modules: ``per_example`` (broadcasting per-example values, per-example keys, the active set of
still-robust points) and ``model_calls`` (model wrappers, the loss/gradient closure, input checks);
projections and step directions come from ``jaxrobust.threat``; ``transforms`` holds the EoT
transformations and the EoT model wrappers. Training-only attacks
whose points may leave the eps-ball (UDR's soft ball, ``jaxrobust.attacks.udr.udr_pgd``) are not
in the registry, so the evaluator never reports them as robust accuracy.
"""

from jaxrobust.attacks.registry import attack_names, attack_option_docs, attack_parameters, get_attack

__all__ = ["attack_names", "attack_option_docs", "attack_parameters", "get_attack"]
