"""Every jittable attack traces once: new data, labels and keys with the same shapes reuse the
compiled program (no recompilation when only the data changes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.registry import get_attack
from jaxrobust.models import get_model, init_model, make_apply

CONFIGS = {
    "fgsm": dict(eps=0.1), "fgsm_rs": dict(eps=0.1), "rfgsm": dict(eps=0.1),
    "bim": dict(eps=0.1, steps=3), "pgd": dict(eps=0.1, steps=3), "pgd_l2": dict(eps=1.0, steps=3),
    "mim": dict(eps=0.1, steps=3), "cw_linf": dict(eps=0.1, steps=3), "lm_pgd": dict(eps=0.1, steps=3),
    "cw_l2": dict(steps=3), "apgd_ce": dict(eps=0.1, n_iter=4), "apgd_dlr": dict(eps=0.1, n_iter=4),
    "apgd_t": dict(eps=0.1, n_iter=4, n_target_classes=2), "fab": dict(eps=0.1, n_iter=3),
    "fab_t": dict(eps=0.1, n_iter=3, n_target_classes=2), "square": dict(eps=0.1, n_queries=5),
    "difgsm": dict(eps=0.1, steps=3), "tifgsm": dict(eps=0.1, steps=3, len_kernel=3), "nifgsm": dict(eps=0.1, steps=3),
    "sinifgsm": dict(eps=0.1, steps=3, scales=2), "vmifgsm": dict(eps=0.1, steps=3, n_neighbours=2),
    "vnifgsm": dict(eps=0.1, steps=3, n_neighbours=2), "transfer_fgsm": dict(eps=0.1, steps=3),
    "fmn": dict(steps=3, norm="l1"), "ddn": dict(steps=3), "bb": dict(eps=0.1, steps=3, init_steps=2, repeats=2),
    "spsa": dict(eps=0.1, steps=2, spsa_samples=8), "deepfool": dict(steps=3),
    "ead": dict(max_iterations=3, binary_search_steps=2), "ead_l1": dict(max_iterations=3, binary_search_steps=2),
    "mpgd": dict(eps=0.1, steps=3), "mpgd_vmap": dict(eps=0.1, steps=3, layout="vmap"),
    "mpgd_batch": dict(eps=0.1, steps=3, layout="batch"),
    "eot_pgd": dict(eps=0.1, steps=3, eot_iter=2), "universal_pgd": dict(eps=0.1, steps=3, group_size=4),
    "pgd_eot_rand": dict(eps=0.1, steps=3, randomized=True, eot_iter=2),
    "moo_uni": dict(eps=0.1, steps=2, group_size=3), "moo_eot": dict(eps=0.1, steps=2, transforms=("H", "R")),
}
# moo_ens needs a member-logits model (AttackInfo.model_output): tests/attacks/test_moo.py checks it compiles once.
CASE_OF = {"mpgd_vmap": "mpgd", "mpgd_batch": "mpgd", "pgd_eot_rand": "pgd"}  # extra cases of one attack: case -> attack name


@pytest.fixture(scope="module")
def model():
  module = get_model("mlp", num_classes=10, hidden_sizes=(16,))
  variables = init_model(module, jax.random.key(0), (8, 8, 1))
  return make_apply(module), variables


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attack_compiles_once_across_data(name, model):
  apply, variables = model
  traces = []

  def logits_fn(x, *keys):  # a randomised case gets (x, keys) and adds key-drawn noise
    traces.append(x.shape)
    if keys:
      x = x + 0.01 * jax.vmap(lambda k, xi: jax.random.normal(k, xi.shape))(keys[0], x)
    return apply(variables, x)

  attack = get_attack(CASE_OF.get(name, name), **CONFIGS[name])
  run = jax.jit(lambda x, y, key: attack(logits_fn, x, y, key))
  for seed in range(3):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.random((6, 8, 8, 1), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, 6).astype(np.int32))
    out = run(x, y, jax.random.key(seed))
    if seed == 0:
      n_traces = len(traces)
  jax.block_until_ready(out)
  assert run._cache_size() == 1
  assert len(traces) == n_traces  # the later calls did not trace logits_fn again
