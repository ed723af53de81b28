"""The benchmark's machine record and its markdown report."""

from __future__ import annotations

import datetime
import os
import platform
from typing import List, Optional

import numpy as np

KIND_TITLES = {"pgd": "PGD-{steps} Linf", "pgd_at": "PGD-AT step (PGD-{steps})",
               "trades": "TRADES step (PGD-{steps})", "adr_trades": "ADR-TRADES step (PGD-{steps})",
               "ascl": "ASCL-ADV step (PGD-{steps})", "memory": "memory"}


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _xla_cpu_status() -> str:
  from jaxrobust import xla_cpu
  return xla_cpu.status()


def load_average() -> Optional[List[float]]:
  try:
    return [round(v, 2) for v in os.getloadavg()]
  except OSError:
    return None


def machine_info(torch_mod) -> dict:
  """Date, CPU, core count, platform, library versions, XLA flags and thread settings (torch_mod: torch or None)."""
  import flax
  import jax
  import jaxlib
  import optax
  try:
    affinity = len(os.sched_getaffinity(0))
  except AttributeError:
    affinity = None
  info = {
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_affinity": affinity,
    "platform": platform.platform(), "python": platform.python_version(),
    "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
    "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
    "numpy": np.__version__,
    "env": {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ},
    "threads": {"jax": "XLA CPU default (one intra-op pool over all cores)"},
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "jaxrobust_xla_cpu": _xla_cpu_status(),
  }
  if torch_mod is not None:
    from benchmarks.torch_steps import thread_info
    info["torch"] = torch_mod.__version__
    info["threads"].update(thread_info())
    info["torch_device"] = "cpu"
  return info


def _fmt_s(v) -> str:
  if v is None:
    return "-"
  return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _fmt_rate(v) -> str:
  if v is None:
    return "-"
  return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _mib(b) -> str:
  return "-" if b is None else f"{b / 2**20:.1f}"


def render_markdown(report: dict) -> str:
  m = report["machine"]
  lines = ["```", report["command"], "```", ""]
  threads = m["threads"]
  tline = f"torch {m['torch']}, {threads.get('torch_num_threads')} threads" if "torch" in m else "no torch"
  load0, load1 = report.get("load_average_start"), report.get("load_average_end")
  lines.append(f"{m['date_utc']} · {m['cpu_model']} · {m['cpu_count']} cores · jax {m['jax']} "
               f"({m['jax_backend']}) · {tline} · load average (1/5/15 min) at start {load0}, at end {load1}")
  lines.append("")
  lines.append("Median of interleaved repeats after warm-up; spread is min-max over the repeats. "
               "Rate = batch / median time (images/s for PGD, examples/s for train steps). "
               "x torch = torch eager median / this median (> 1: faster than eager PyTorch). "
               "Compile = jax lower + XLA compile (torch.compile: first call minus median).")
  lines.append("")
  timed = [r for r in report["rows"] if r["kind"] != "memory"]
  if timed:
    lines.append("| row | model | batch | variant | median s | min-max s | rate/s | x torch | compile s |")
    lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in timed:
      title = KIND_TITLES[r["kind"]].format(steps=r["steps"])
      for v in r["variants"]:
        if "error" in v:
          lines.append(f"| {title} | {r['model_label']} | {r['batch_size']} | {v['name']} | failed: "
                       f"{v['error'][:80]} | | | | |")
          continue
        comp = v.get("compile_total_s")
        if comp is None and v.get("torch_compile"):
          comp = v.get("first_call_minus_median_s")
        sp = r["speedup_vs_torch_eager"].get(v["name"])
        lines.append(f"| {title} | {r['model_label']} | {r['batch_size']} | {v['name']} | {_fmt_s(v.get('median_s'))} "
                     f"| {_fmt_s(v.get('min_s'))}-{_fmt_s(v.get('max_s'))} | {_fmt_rate(v.get('items_per_s'))} "
                     f"| {'-' if sp is None else f'{sp:.2f}'} | {_fmt_s(comp)} |")
    parity = [f"{r['model']} {r['logits_max_abs_diff_jax_torch']:.1e}" for r in timed
              if r.get("logits_max_abs_diff_jax_torch") is not None]
    if parity:
      lines.append("")
      lines.append("Same network check, max |logits jax - logits torch| on the clean batch: " + ", ".join(parity))
  mem = [r for r in report["rows"] if r["kind"] == "memory"]
  if mem:
    lines += ["", "XLA memory analysis (static; peak estimate = arguments + outputs + temporaries - aliased):", "",
              "| model | batch | program | temp MiB | peak est. MiB | x fwd-bwd (input grad) |",
              "|---|---:|---|---:|---:|---:|"]
    for r in mem:
      for name, p in r["programs"].items():
        if "error" in p:
          lines.append(f"| {r['model_label']} | {r['batch_size']} | {name} | failed: {p['error'][:80]} | | |")
          continue
        ratio = r["ratio_vs_fwd_bwd_input"].get(name, {}).get("peak_estimate")
        lines.append(f"| {r['model_label']} | {r['batch_size']} | {name} | {_mib(p['memory'].get('temp_size_in_bytes'))} "
                     f"| {_mib(p['memory'].get('peak_estimate_bytes'))} | {'-' if ratio is None else f'{ratio:.2f}'} |")
  curves = report.get("curves")
  if curves:
    for cname in ("batch", "steps", "eps", "members"):
      c = curves[cname]
      names = []
      for p in c["points"]:
        names += [v["name"] for v in p["variants"] if v["name"] not in names]
      lines += ["", f"Curve: SmallCNN PGD time vs {c['x_label']} "
                f"({', '.join(f'{k} {c[k]}' for k in ('batch_size', 'steps') if k in c)}); "
                "median s (rate/s), compile s in brackets:", "",
                "| " + c["x_label"] + " | " + " | ".join(names) + " |",
                "|---:|" + "---:|" * len(names)]
      for p in c["points"]:
        cells = []
        for n in names:
          v = next((v for v in p["variants"] if v["name"] == n), None)
          if v is None or "median_s" not in v:
            cells.append("failed" if v is not None else "-")
            continue
          comp = v.get("compile_total_s")
          cells.append(f"{_fmt_s(v['median_s'])} ({_fmt_rate(v['items_per_s'])})"
                       + (f" [{_fmt_s(comp)}]" if comp is not None else ""))
        lines.append(f"| {p['x']} | " + " | ".join(cells) + " |")
  if report["errors"]:
    lines += ["", "Errors: " + "; ".join(report["errors"])]
  return "\n".join(lines) + "\n"


def collect_errors(report: dict) -> List[str]:
  errs = []
  for r in report["rows"]:
    for v in r.get("variants", []):
      if "error" in v:
        errs.append(f"{r['id']}/{v['name']}: {v['error']}")
    for name, p in r.get("programs", {}).items():
      if "error" in p:
        errs.append(f"{r['id']}/{name}: {p['error']}")
    if r.get("parity_error"):
      errs.append(f"{r['id']}/parity: {r['parity_error']}")
  for cname, c in (report.get("curves") or {}).items():
    if isinstance(c, dict):
      for p in c.get("points", []):
        for v in p["variants"]:
          if "error" in v:
            errs.append(f"curve {cname}={p['x']}/{v['name']}: {v['error']}")
  return errs


def write_crosscheck(result: dict, to_markdown, out: str) -> None:
  """A cross-check script's ending: its markdown table into ``result['markdown']``, printed, and the whole
  result written as JSON to ``out``."""
  import json
  result["markdown"] = to_markdown(result)
  print(result["markdown"])
  with open(out, "w") as fh:
    json.dump(result, fh, indent=2)
  print(f"wrote {out}")
