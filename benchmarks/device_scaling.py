"""Cost against the number of devices: the sharded PGD-10 attack and PGD-AT train step, or (``--evaluation``)
a whole ``RobustEvaluator`` pass with PGD-10 and a short AutoAttack.

    python -m benchmarks.device_scaling [--devices 1,2,4,8] [--batch-size 128]
        [--model small_cnn] [--repeats 5] [--out benchmarks/results/device_scaling_small_cnn]
    python -m benchmarks.device_scaling --evaluation [--devices 1,2,4,8] [--batch-size 128] [--repeats 2]

Each device count runs in its own process (XLA fixes the device count when the backend starts),
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` on CPU, so on a CPU machine the N
"devices" share the same cores: this measures what data parallelism *costs* (partitioned
programs, the gradient all-reduce, per-device launch) at a fixed global batch, not a speed-up.
On a GPU/TPU host the same script with ``--real-devices`` uses the first N real devices.

Both programs are the library's own: the attack is ``jaxrobust.attacks.pgd`` jitted with the
batch sharded over a ``jax.sharding`` mesh (``parallel.make_mesh``), the train step is
``make_train_step`` jitted exactly as ``Trainer`` does (state replicated, batch sharded, state
donated). Times are medians of ``--repeats`` calls after one warm-up call; compile time is
lower + compile of the AOT program.

``--evaluation`` times ``RobustEvaluator.evaluate`` end to end on ``--batch-size`` points (one batch), labelled
with the model's own clean predictions so every point is attacked: the jitted PGD-10 step (random start) and
AutoAttack standard with short stages (``EVAL_AUTOATTACK``), whose host loop re-balances the still-robust points
over the devices between runs. 'first call' includes compilation; the median is over ``--repeats`` later calls.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository root, where `-m benchmarks...` resolves
NUM_CLASSES = 10
SPECS = {
    "small_cnn": dict(shape=(28, 28, 1), eps=0.3, kwargs={}),
    "preact_resnet18": dict(shape=(32, 32, 3), eps=8 / 255, kwargs={}),
}


def child(args) -> dict:
  """Runs in a process whose device count is already fixed; returns the measurements."""
  import jax
  import jax.numpy as jnp
  from jaxrobust import parallel
  from jaxrobust.attacks.pgd import pgd
  from jaxrobust.methods import DatasetInfo, get_method
  from jaxrobust.models import get_model, init_model, make_apply
  from jaxrobust.train.optim import make_optimizer, make_schedule
  from jaxrobust.train.state import create_train_state
  from jaxrobust.train.step import make_train_step

  spec = SPECS[args.model]
  n = args.num_devices
  mesh = parallel.make_mesh(n)
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  module = get_model(args.model, NUM_CLASSES, **spec["kwargs"])
  variables = init_model(module, jax.random.key(0), spec["shape"])
  rng = np.random.default_rng(0)
  x = rng.random((args.batch_size,) + spec["shape"], dtype=np.float32)
  y = rng.integers(0, NUM_CLASSES, args.batch_size).astype(np.int32)
  eps = spec["eps"]
  apply = make_apply(module)

  def timed(compiled, call_args, donate_first=False):
    times = []
    state = call_args[0]
    for r in range(args.repeats + 1):
      a = (state,) + tuple(call_args[1:])
      t0 = time.perf_counter()
      out = compiled(*a)
      jax.block_until_ready(out)
      if r:
        times.append(time.perf_counter() - t0)
      if donate_first:
        state = out[0]
    return times

  results = {}
  # PGD-10, batch sharded.
  def attack(v, xx, yy, key):
    return pgd(lambda z: apply(v, z), xx, yy, key, eps=eps, step_size=eps / 4, steps=args.steps)
  v_r = parallel.replicate(variables, mesh)
  xs, ys = jax.device_put(x, data), jax.device_put(y, data)
  key = jax.device_put(jax.random.key(1), repl)
  t0 = time.perf_counter()
  lowered = jax.jit(attack, in_shardings=(repl, data, data, repl), out_shardings=data).lower(v_r, xs, ys, key)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  times = timed(compiled, (v_r, xs, ys, key))
  results["pgd"] = {"compile_s": t2 - t0, "times_s": times, "median_s": float(np.median(times))}

  # PGD-AT train step, as Trainer jits it.
  method = get_method("pgd_at", eps=eps, step_size=eps / 4, steps=args.steps)
  tx = make_optimizer(name="sgd", lr_schedule=make_schedule(lr=0.1, steps_per_epoch=1, epochs=1),
                      momentum=0.9, weight_decay=5e-4)
  step = make_train_step(module, method, tx, steps_per_epoch=1, num_classes=NUM_CLASSES)
  own = jax.tree.map(lambda a: jnp.array(a, copy=True), variables)
  state = create_train_state(own, tx, jax.random.key(2),
                             method.init_state(DatasetInfo(args.batch_size, NUM_CLASSES, y)))
  state = parallel.replicate(state, mesh)
  batch = parallel.shard_batch({"image": x, "label": y,
                                "index": np.arange(args.batch_size, dtype=np.int32)}, mesh)
  t0 = time.perf_counter()
  lowered = jax.jit(step, in_shardings=(repl, data), out_shardings=(repl, repl),
                    donate_argnums=(0,)).lower(state, batch)
  compiled = lowered.compile()
  t2 = time.perf_counter()
  times = timed(compiled, (state, batch), donate_first=True)
  results["pgd_at_step"] = {"compile_s": t2 - t0, "times_s": times, "median_s": float(np.median(times))}
  results["devices"] = [str(d) for d in mesh.devices.flat]
  results["batch_shards"] = len(xs.addressable_shards)  # the batch really is split N ways
  results["num_devices"] = n
  return results


# AutoAttack standard with short stages: the cascade's structure (4 stages, targets, host-side re-balancing)
# at a benchmark's cost.
EVAL_AUTOATTACK = {"apgd-ce": {"n_iter": 10}, "apgd-t": {"n_iter": 10, "n_target_classes": 3},
                   "fab-t": {"n_iter": 10, "n_target_classes": 3}, "square": {"n_queries": 100}}


def child_evaluation(args) -> dict:
  """The evaluator's cost on N devices: PGD-10 and a short AutoAttack, each as one evaluation spec."""
  import jax
  from jaxrobust import parallel
  from jaxrobust.data import ArrayDataset
  from jaxrobust.evaluate.robust import RobustEvaluator
  from jaxrobust.models import get_model, init_model, make_apply

  spec = SPECS[args.model]
  module = get_model(args.model, NUM_CLASSES, **spec["kwargs"])
  variables = init_model(module, jax.random.key(0), spec["shape"])
  x = np.random.default_rng(0).random((args.batch_size,) + spec["shape"], dtype=np.float32)
  y = np.asarray(jax.numpy.argmax(make_apply(module)(variables, x), -1)).astype(np.int32)
  data = ArrayDataset(x, y, NUM_CLASSES, "random")
  evaluator = RobustEvaluator.for_module(module, mesh=parallel.make_mesh(args.num_devices))
  eps = spec["eps"] / 10  # an untrained model: a small ball leaves points for the later AutoAttack stages
  specs = {"evaluate_pgd": {"name": "pgd", "eps": eps, "step_size": eps / 4, "steps": args.steps, "init": "uniform"},
           "evaluate_autoattack": {"name": "autoattack", "eps": eps, "attack_kwargs": EVAL_AUTOATTACK}}
  results = {}
  for name, attack in specs.items():
    times, report = [], None
    for _ in range(args.repeats + 1):
      t0 = time.perf_counter()
      report = evaluator.evaluate(variables, data, [dict(attack, label=name)], batch_size=args.batch_size,
                                  progress=False)
      times.append(time.perf_counter() - t0)
    results[name] = {"compile_s": times[0], "times_s": times[1:], "median_s": float(np.median(times[1:])),
                     "robust_acc": report["robust_acc"][name]}
  results["num_devices"] = args.num_devices
  return results


def parent(args) -> None:
  counts = [int(c) for c in args.devices.split(",")]
  runs = []
  for n in counts:
    env = dict(os.environ)
    if not args.real_devices:
      flags = env.get("XLA_FLAGS", "")
      env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()
      env.setdefault("JAX_PLATFORMS", "cpu")
    cmd = [sys.executable, "-m", "benchmarks.device_scaling", "--child", "--num-devices", str(n), "--model", args.model,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--repeats", str(args.repeats)]
    cmd += ["--evaluation"] if args.evaluation else []
    print(f"[device_scaling] {n} device(s) ...", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
      raise SystemExit(f"child with {n} devices failed:\n{out.stderr[-4000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    runs.append(res)
    print("  " + ", ".join(f"{k} {res[k]['median_s']:.3f} s" for k in _programs(args)), file=sys.stderr, flush=True)

  import jax
  meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "jax": jax.__version__, "load_avg": list(os.getloadavg()),
          "simulated_cpu_devices": not args.real_devices, "model": args.model, "batch_size": args.batch_size,
          "steps": args.steps, "repeats": args.repeats,
          "command": "python -m benchmarks.device_scaling " + " ".join(sys.argv[1:])}
  if args.evaluation:
    table = _evaluation_table(args, meta, runs)
  else:
    table = _program_table(args, meta, runs)
  print(table)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "device_scaling.json"), "w") as f:
      json.dump({"meta": meta, "runs": runs}, f, indent=1)
    with open(os.path.join(args.out, "device_scaling.md"), "w") as f:
      f.write(table)


def _programs(args) -> tuple[str, ...]:
  return ("evaluate_pgd", "evaluate_autoattack") if args.evaluation else ("pgd", "pgd_at_step")


def _evaluation_table(args, meta, runs) -> str:
  base = {k: runs[0][k]["median_s"] for k in _programs(args)}
  lines = [f"`{meta['command']}`", "",
           f"{meta['date']} · {meta['cpu_count']} cores · load average {meta['load_avg'][0]:.1f} · "
           f"jax {meta['jax']} · "
           f"{'simulated CPU devices sharing the cores' if meta['simulated_cpu_devices'] else 'real devices'}"
           f" · {args.batch_size} points, one batch · {args.model} · median of {args.repeats}", "",
           f"| devices | evaluate PGD-{args.steps} s | x 1 device | evaluate AutoAttack (short) s | x 1 device | "
           "first call (with compile) PGD / AutoAttack s | robust acc PGD / AutoAttack |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
  for r in runs:
    p, a = r["evaluate_pgd"], r["evaluate_autoattack"]
    lines.append(f"| {r['num_devices']} | {p['median_s']:.3f} | {p['median_s'] / base['evaluate_pgd']:.2f} | "
                 f"{a['median_s']:.3f} | {a['median_s'] / base['evaluate_autoattack']:.2f} | "
                 f"{p['compile_s']:.1f} / {a['compile_s']:.1f} | {p['robust_acc']:.3f} / {a['robust_acc']:.3f} |")
  return "\n".join(lines) + "\n"


def _program_table(args, meta, runs) -> str:
  base = {k: runs[0][k]["median_s"] for k in ("pgd", "pgd_at_step")}
  lines = [f"`{meta['command']}`", "",
           f"{meta['date']} · {meta['cpu_count']} cores · jax {meta['jax']} · "
           f"{'simulated CPU devices sharing the cores' if meta['simulated_cpu_devices'] else 'real devices'}"
           f" · global batch {args.batch_size} · {args.model} · PGD-{args.steps} · median of {args.repeats}", "",
           "| devices | per-device batch | PGD s | x 1 device | PGD-AT step s | x 1 device | compile PGD / step s |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
  for r in runs:
    n = r["num_devices"]
    lines.append(f"| {n} | {args.batch_size // n} | {r['pgd']['median_s']:.3f} | "
                 f"{r['pgd']['median_s'] / base['pgd']:.2f} | {r['pgd_at_step']['median_s']:.3f} | "
                 f"{r['pgd_at_step']['median_s'] / base['pgd_at_step']:.2f} | "
                 f"{r['pgd']['compile_s']:.1f} / {r['pgd_at_step']['compile_s']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
  p.add_argument("--model", default="small_cnn", choices=sorted(SPECS))
  p.add_argument("--batch-size", type=int, default=128, help="global batch (divisible by every count)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--real-devices", action="store_true", help="use real devices (GPU/TPU), not simulated CPU ones")
  p.add_argument("--evaluation", action="store_true",
                 help="time RobustEvaluator.evaluate (PGD-10 and a short AutoAttack) instead of the PGD program and "
                      "the PGD-AT step")
  p.add_argument("--out", default=None)
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--num-devices", type=int, default=1, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(child_evaluation(args) if args.evaluation else child(args)))
  else:
    for n in (int(c) for c in args.devices.split(",")):
      if n < 1 or args.batch_size % n:
        p.error(f"--batch-size {args.batch_size} must be divisible by every device count; got {n}")
    parent(args)


if __name__ == "__main__":
  main()
