"""Benchmark harness: JAX vs PyTorch, side by side in one process.

    python -m benchmarks.harness [--quick] [--rows ROWS] [--batch-size B] [--repeats N] [--steps T]
                                 [--curves] [--torch-compile] [--no-torch] [--json OUT] [--markdown OUT]

Rows (ids ``KIND:MODEL``, KIND in pgd, pgd_at, trades, memory, and the opt-in adr_trades, ascl;
MODEL in small_cnn, preact_resnet18):

* ``pgd``: PGD-T Linf throughput (Madry et al. 2018 ; random start, step eps/4; eps 0.3 on SmallCNN 28x28x1,
  8/255 on PreAct ResNet-18 32x32x3). JAX as the library runs it (``jax``: ``lax.fori_loop``,
  forward passes in micro-batches (``models.microbatch``)), fully unrolled (``jax_unrolled``) and without
  micro-batches (``jax_whole_batch``); PyTorch eager (torchattacks' PGD loop); torch.compile
  with ``--torch-compile`` (slow to compile, so off by default).
* ``pgd_at`` / ``trades``: one whole train step (attack + SGD update) per call; examples/s.
  The JAX step is ``make_train_step`` with the library's defaults (rolled PGD loop).
* ``adr_trades`` / ``ascl`` (opt-in: run only when named, never by 'all' or a model name): one
  ADR-TRADES (Bui et al. 2020) or ASCL-ADV (Bui et al. 2021) train step, the library defaults at the
  row's eps and steps, against ``torch_steps.adr_trades_step`` / ``ascl_step`` (the authors' losses
  on the twin's penultimate features). Compare with the ``trades`` / ``pgd_at`` rows of the same model.
* ``memory``: XLA's ``memory_analysis()`` of the compiled PGD-T programs and of one
  forward-backward at the same batch (input gradient, i.e. one PGD step; and parameter gradient
  in train mode), with the ratios. No timing.

Method: every JAX function is compiled ahead of time (``jax.jit(f).lower(...).compile()``, the
lower and compile times are recorded per row) and then called through the compiled executable.
Each variant gets ``--warmup`` untimed calls, then the variants of a row are timed
*interleaved*: repeat r runs every variant once, in an order rotated by r, so slow drifts in
machine load hit all variants alike. We report the median and the spread (min/max and the
quartiles) of the wall time per call, and images/s = batch / time. Both frameworks see the
same weights (ported with ``torch_models.port_flax_to_torch``) and the same data; the
clean-logit difference is recorded as a sanity check.

``--curves`` adds SmallCNN cost curves: PGD time vs batch size, vs steps, vs the number of eps
values vmapped (against a Python loop over eps) and vs the number of ensemble members vmapped
(against a loop over members).

Timings are only as good as the machine is quiet: the JSON records the load average before and
after the run, the CPU model, core count, thread settings and library versions.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import sys
import time
from typing import List

from benchmarks import torch_models
from benchmarks.rows import EXTRA_KINDS, KINDS, MODELS, Bench, run_curves, run_memory_row, run_timed_row
from benchmarks.report import collect_errors, load_average, machine_info, render_markdown
from benchmarks.timing import GAP_S

SCHEMA = "jaxrobust.benchmark/1"


def row_ids() -> List[str]:
  """Every default row id KIND:MODEL ('all'), in the canonical order."""
  return [f"{k}:{m}" for k in KINDS for m in MODELS]


def all_row_ids() -> List[str]:
  """The default rows, then the opt-in ones (EXTRA_KINDS), in the canonical order."""
  return row_ids() + [f"{k}:{m}" for k in EXTRA_KINDS for m in MODELS]


def select_rows(spec: str) -> List[str]:
  """--rows: comma-separated kinds, models, 'train' (= pgd_at,trades), 'all', or id globs.

  The opt-in kinds (adr_trades, ascl) are selected only by an item that names the kind itself
  (``ascl``, ``ascl:small_cnn``, ``ascl:*``), never by 'all', 'train', a model name or ``*:MODEL``.
  """
  ids = all_row_ids()
  if spec.strip() in ("", "all"):
    return row_ids()
  if spec.strip() == "none":  # e.g. --curves alone
    return []
  chosen = []
  for item in (s.strip() for s in spec.split(",") if s.strip()):
    kinds = ("pgd_at", "trades") if item == "train" else (item,)
    named_kind = item.split(":")[0]

    def hit(i):
      kind, model = i.split(":")
      if kind in EXTRA_KINDS and named_kind != kind:
        return False
      return fnmatch.fnmatch(i, item) or kind in kinds or model == item
    hits = [i for i in ids if hit(i)]
    if not hits:
      raise ValueError(f"--rows item {item!r} matches no row; rows are {', '.join(ids)} "
                       "(or a kind, a model, 'train', 'all', 'none')")
    chosen.extend(h for h in hits if h not in chosen)
  return [i for i in ids if i in chosen]  # canonical order


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="smoke-test sizes: batch 8, 2 steps, 2 repeats, a width-8 ResNet on 16x16 (numbers mean nothing)")
  p.add_argument("--rows", default="all",
                 help="comma-separated rows: kinds (pgd, pgd_at, trades, memory, train; opt-in: adr_trades, "
                      "ascl), models (small_cnn, preact_resnet18), ids or globs like 'pgd:*', 'all' (default: "
                      "every row but the opt-in kinds) or 'none'")
  p.add_argument("--batch-size", type=int, default=None, help="batch size (default 128; 8 with --quick)")
  p.add_argument("--steps", type=int, default=None, help="attack steps (default 10; 2 with --quick)")
  p.add_argument("--repeats", type=int, default=None,
                 help="timed repeats per variant (default 5 for SmallCNN rows, 3 for ResNet rows and curves)")
  p.add_argument("--warmup", type=int, default=1, help="untimed calls per variant before timing (default 1)")
  p.add_argument("--curves", action="store_true", help="also run the SmallCNN cost curves")
  p.add_argument("--torch-compile", action="store_true",
                 help="add a torch.compile variant (network compiled, attack loop eager) to the PGD and train rows")
  p.add_argument("--no-torch", action="store_true", help="JAX only (no PyTorch columns)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="write the full results here")
  p.add_argument("--markdown", help="write a markdown table (for BENCHMARKS.md) here")
  p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
  return p


def _write(path: str, text: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def main(argv=None, *, command_prefix: str = "python -m benchmarks.harness") -> int:
  """Runs the benchmark; returns 0 when every variant ran, 1 when some failed, 2 on bad arguments.

  command_prefix: how this run was invoked, for the command line recorded in the reports.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    rows = select_rows(args.rows)
  except ValueError as e:
    parser.error(str(e))
  for name in ("batch_size", "steps", "repeats"):
    v = getattr(args, name)
    if v is not None and v < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.warmup < 0:
    parser.error("--warmup must be >= 0")
  log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

  torch_mod = None
  if not args.no_torch:
    torch_mod = torch_models.require_torch()
    # Both frameworks get every core; JAX's XLA CPU pool already does by default.
    torch_mod.set_num_threads(os.cpu_count() or 1)
    torch_mod.manual_seed(args.seed)

  cfg = {"quick": args.quick, "batch_size": args.batch_size or (8 if args.quick else 128),
         "steps": args.steps or (2 if args.quick else 10), "repeats": args.repeats, "warmup": args.warmup,
         "torch_compile": args.torch_compile, "curves": args.curves, "seed": args.seed}
  report = {"schema": SCHEMA, "command": (command_prefix + " " + shlex.join(argv)).strip(),
            "load_average_start": load_average(), "machine": machine_info(torch_mod),
            "settings": dict(cfg, rows=rows, torch=torch_mod is not None, gap_s=GAP_S), "rows": []}
  bench = Bench(cfg, torch_mod, log)
  t_start = time.perf_counter()
  for row_id in rows:
    kind, model = row_id.split(":")
    log(f"[{row_id}] batch {cfg['batch_size']}, steps {cfg['steps']}")
    if kind == "memory":
      report["rows"].append(run_memory_row(bench, model))
    else:
      report["rows"].append(run_timed_row(bench, kind, model))
  if args.curves:
    report["curves"] = run_curves(bench)
  report["load_average_end"] = load_average()
  report["total_s"] = time.perf_counter() - t_start
  report["errors"] = collect_errors(report)
  markdown = render_markdown(report)
  if args.json:
    _write(args.json, json.dumps(report, indent=2) + "\n")
    log(f"json: {args.json}")
  if args.markdown:
    _write(args.markdown, markdown)
    log(f"markdown: {args.markdown}")
  print(markdown)
  return 1 if report["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())