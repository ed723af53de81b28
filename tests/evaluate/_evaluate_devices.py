"""One process of a sharded evaluation: a linear digits model under PGD (random start) and a small AutoAttack.

usage: python _evaluate_devices.py WEIGHTS.npz OUT_PREFIX CASCADE LOCAL_DEVICES [PROCESS_ID NUM_PROCESSES PORT]
CASCADE: 'full' (AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square, a few iterations each) or 'quick'
(APGD-CE only: the cascade's host loop on sharded buckets at the least compile time).
Each process owns LOCAL_DEVICES CPU devices; with NUM_PROCESSES > 1 they join through jax.distributed (gloo).
Every process writes OUT_PREFIX<process id>.npz: the per-point flags, the adversarial points and the report's
accuracies, so a test can check that all processes hold the same global report.
"""

import json
import os
import sys

weights, out, cascade, local = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pid, nproc, port = (int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]) if len(sys.argv) > 7 else (0, 1, None)
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local}"
os.environ["JAX_PLATFORMS"] = "cpu"

from jaxrobust import parallel  # noqa: E402

if nproc > 1:
  parallel.initialize_distributed(f"127.0.0.1:{port}", nproc, pid)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrobust.data import load_dataset  # noqa: E402
from jaxrobust.evaluate.robust import RobustEvaluator  # noqa: E402

assert jax.process_count() == nproc and jax.device_count() == nproc * local
variables = dict(np.load(weights))


def apply(v, x):
  return x.reshape(x.shape[0], -1) @ v["w"] + v["b"]


SMALL_AUTOATTACK = {"apgd-ce": {"n_iter": 5}, "apgd-t": {"n_iter": 5, "n_target_classes": 2},
                    "fab-t": {"n_iter": 5, "n_target_classes": 2}, "square": {"n_queries": 30}}
specs = [{"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.03, "init": "uniform"},
         {"name": "autoattack", "label": "aa", "eps": 0.1, "attack_kwargs": SMALL_AUTOATTACK,
          **({"attacks": ["apgd-ce"]} if cascade == "quick" else {})}]
report = RobustEvaluator(apply).evaluate(variables, load_dataset("digits", "test").take(44), specs, batch_size=24,
                                         key=jax.random.PRNGKey(3), progress=False, keep_adversarials=True,
                                         checks=cascade == "full")
np.savez(f"{out}{pid}.npz", **{f"flags_{l}": f for l, f in report["robust_flags"].items()},
         **{f"adv_{l}": a for l, a in report["adversarials"].items()}, clean_flags=report["clean_flags"],
         accuracies=json.dumps({k: report[k] for k in ("n", "clean_acc", "robust_acc", "worst_case_acc")}))
print("done", pid)
