"""How long each paper protocol (``jaxrobust list --protocols``) takes: every attack of the protocol is timed on a
small number of points and extrapolated to the protocol's full count.

    python -m benchmarks.protocol_runtimes [--points 32] [--model small|native] [--protocols udr_mnist ...]
    python -m benchmarks.protocol_runtimes --gradient-ratio [--protocols ...]   # native vs small model cost

For each protocol the model is the architecture of the protocol's training config (``--model native``) or, for a
quick run on a CPU, the dataset-shaped SmallCNN (``--model small``, conv 32-64, fc 200; an ensemble protocol keeps
its member count). The model is freshly initialised and the points are random images labelled with its own
predictions, so every point starts clean-correct. Each attack runs twice on the same batch of ``--points`` points;
the second (compiled) run is timed.

Extrapolation: seconds(full) = seconds(points) / points * count, where count is the attack's ``max_examples`` in the
protocol (e.g. AutoAttack on 1000) or the test set's size. That assumes the cost is linear in the number of points
(true for fixed-step attacks batched at this size; larger batches are usually cheaper per point on accelerators).
Attacks that stop early once a point is broken (AutoAttack's cascade, Square, FAB's restarts) finish faster on an
untrained model than on a robust one, so their figures are lower bounds; PGD / CW / MIM / FGSM-type attacks cost the
same whatever the model's robustness. Writes benchmarks/results/protocol_runtimes.json and prints a markdown table.

``--gradient-ratio`` times one input gradient of the CE loss (a forward and a backward pass, what every attack step
costs) per point on the native architecture and on the small one; a native full-run estimate is then the small
model's figure times that ratio (assumption: attack time is dominated by model passes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust.configs import load_config
from jaxrobust.configs.protocols import get_protocol, protocol_names
from jaxrobust.data.dataset import ArrayDataset
from jaxrobust.data.info import dataset_info
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.models import get_model, init_model

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

# The training config whose model a protocol's paper evaluates (its architecture and member count).
PROTOCOL_CONFIGS = {
    "adap_cifar10": "adap_cifar10", "adr_cifar10": "cifar10_adr", "adr_mnist": "mnist_adr",
    "ascl_cifar10": "cifar10_ascl", "ascl_cifar100": "cifar100_ascl", "cce_cifar10": "cifar10_cce",
    "cce_cifar100": "cifar10_cce", "mail_cifar10": "cifar10_mail_at", "spat_cifar10": "cifar10_spat",
    "spat_mnist": "mnist_spat", "tamoo_at_cifar10": "cifar10_tamoo_at", "tamoo_ens_cifar10": "cifar10_pgd_at",
    "udr_cifar10": "cifar10_udr", "udr_cifar100": "cifar100_udr", "udr_mnist": "mnist_udr",
}
SMALL = {"name": "small_cnn", "head": "linear", "channels": (32, 64), "hidden": 200}


def _model_section(protocol, kind: str) -> dict:
  cfg = load_config(PROTOCOL_CONFIGS[protocol.name])
  model = dict(cfg["model"])
  members = protocol.members or model.get("members")
  if kind == "small":
    model = dict(SMALL)
  if members:
    model["members"] = int(members)
  return model


def _num_classes(protocol) -> int:
  if protocol.metric == "ap":  # one-vs-all models have one logit
    return 1
  return dataset_info(protocol.dataset).num_classes


def time_protocol(name: str, points: int = 32, kind: str = "small", seed: int = 0) -> dict:
  """{'protocol', 'model', 'points', 'attacks': [{label, count, seconds, per_point_ms, full_s} or {label, error}]}."""
  protocol = get_protocol(name)
  if name not in PROTOCOL_CONFIGS:
    raise ValueError(f"no training config known for protocol {name!r}; add it to PROTOCOL_CONFIGS")
  model_cfg, module = _model(protocol, kind)
  k = _num_classes(protocol)
  info = dataset_info(protocol.dataset)
  full_n = 10000  # the CIFAR-10/100 and MNIST test sets
  x = jax.random.uniform(jax.random.key(seed), (points, *info.image_shape))
  variables = init_model(module, jax.random.key(seed + 1), x.shape)
  evaluator = RobustEvaluator.for_module(module)
  logits = evaluator.apply(variables, x)
  if k == 1:  # a one-vs-all model's single logit: a binary task, labels from its sign
    y, data_classes = np.asarray(logits[:, 0] > 0).astype(np.int32), 2
  else:
    y, data_classes = np.asarray(jnp.argmax(logits, -1)), k
  data = ArrayDataset(np.asarray(x), y, data_classes, protocol.dataset)
  rows = []
  for spec in protocol.attacks:
    spec = dict(spec)
    count = int(spec.pop("max_examples", full_n))
    label = spec["label"]
    try:
      for _ in range(2):  # the first call compiles
        t0 = time.perf_counter()
        evaluator.evaluate(variables, data, [spec], batch_size=points, progress=False, key=jax.random.key(seed))
        seconds = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001  (a protocol attack this harness cannot drive is reported, not fatal)
      rows.append(dict(label=label, count=count, error=f"{type(e).__name__}: {str(e)[:160]}"))
      continue
    rows.append(dict(label=label, count=count, seconds=round(seconds, 3),
                     per_point_ms=round(1000 * seconds / points, 2), full_s=round(seconds / points * count, 1)))
  return dict(protocol=name, model=model_cfg, points=points, attacks=rows)


def _model(protocol, kind):
  model_cfg = _model_section(protocol, kind)
  return model_cfg, get_model(model_cfg["name"], _num_classes(protocol),
                              **{a: v for a, v in model_cfg.items() if a != "name"})


def gradient_seconds(name: str, kind: str, points: int = 32, repeats: int = 3) -> float:
  """Seconds per point of one input gradient of the summed CE (forward + backward) on ``points`` points."""
  protocol = get_protocol(name)
  _, module = _model(protocol, kind)
  x = jax.random.uniform(jax.random.key(0), (points, *dataset_info(protocol.dataset).image_shape))
  variables = init_model(module, jax.random.key(1), x.shape)
  apply = RobustEvaluator.for_module(module).apply
  grad = jax.jit(jax.grad(lambda z: jnp.sum(jax.nn.logsumexp(apply(variables, z), -1))))
  grad(x).block_until_ready()  # compile
  t0 = time.perf_counter()
  for _ in range(repeats):
    grad(x).block_until_ready()
  return (time.perf_counter() - t0) / repeats / points


def markdown(results: list, meta: dict) -> str:
  lines = [f"Protocol runtimes, {meta['model']} models, {meta['points']} points, {meta['device']}; "
           f"load average {meta['load']} (measured under load)", "",
           "| protocol | model | attack | s / point | points in protocol | estimated full run |",
           "|---|---|---|---|---|---|"]
  for r in results:
    arch = r["model"]["name"] + (f" x{r['model']['members']}" if r["model"].get("members") else "")
    total = 0.0
    for a in r["attacks"]:
      if "error" in a:
        lines.append(f"| {r['protocol']} | {arch} | {a['label']} | not timed: {a['error']} | {a['count']} | - |")
        continue
      total += a["full_s"]
      lines.append(f"| {r['protocol']} | {arch} | {a['label']} | {a['per_point_ms'] / 1000:.4f} | {a['count']} | "
                   f"{a['full_s'] / 60:.1f} min |")
    lines.append(f"| {r['protocol']} | {arch} | **all attacks** | | | **{total / 3600:.2f} h** |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--points", type=int, default=32)
  ap.add_argument("--model", choices=("small", "native"), default="small")
  ap.add_argument("--protocols", nargs="+", default=None, help="default: every protocol")
  ap.add_argument("--gradient-ratio", action="store_true",
                  help="time one input gradient per point on the native and the small model instead")
  ap.add_argument("--out", default=None, help="default: benchmarks/results/protocol_runtimes[_gradients].json")
  args = ap.parse_args(argv)
  args.out = args.out or str(RESULTS / ("protocol_gradients.json" if args.gradient_ratio else
                                        "protocol_runtimes.json"))
  if args.points < 1:
    raise SystemExit(f"error: --points must be >= 1; got {args.points}")
  names = args.protocols or protocol_names()
  unknown = [n for n in names if n not in protocol_names()]
  if unknown:
    raise SystemExit(f"error: unknown protocols {unknown}; see jaxrobust list --protocols")
  if args.gradient_ratio:
    rows = []
    for name in names:
      small, native = gradient_seconds(name, "small", args.points), gradient_seconds(name, "native", args.points)
      arch = _model_section(get_protocol(name), "native")
      rows.append(dict(protocol=name, model=arch, small_ms=round(1000 * small, 3), native_ms=round(1000 * native, 3),
                       ratio=round(native / small, 2)))
      print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "w") as fh:
      json.dump(dict(points=args.points, device=str(jax.devices()[0]), load=os.getloadavg()[0], rows=rows), fh,
                indent=2)
    print(f"wrote {args.out}")
    return
  results = []
  for name in names:
    r = time_protocol(name, args.points, args.model)
    print(json.dumps(r), flush=True)
    results.append(r)
  meta = dict(model=args.model, points=args.points, device=str(jax.devices()[0]), load=os.getloadavg()[0],
              jax=jax.__version__,
              assumption="full = seconds / points * count (linear in points); early-stopping attacks are lower "
                         "bounds on a freshly initialised model")
  table = markdown(results, meta)
  print(table)
  with open(args.out, "w") as fh:
    json.dump(dict(meta=meta, results=results, markdown=table), fh, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
