"""The package is layered: a module imports only modules of its own or a lower layer.

Layers, lowest first (ARCHITECTURE.md draws the same picture):

  0 types                       the shapes every part meets through
  1 xla_cpu threat losses parallel registries compile_cache event_file
  2 models data                 what is trained on and what is trained
  3 attacks                     pure functions of (logits_fn, x, y, key)
  4 methods                     training losses, each with its training attack
  5 evaluate                    one batch loop, metrics as plug-ins
  6 configs                     declared keys, validated against the registries below
  7 train                       the loop: batches -> step -> checkpoints -> evaluation
  8 runs cli quickstart         entry points
"""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxrobust"
LAYERS = [
    {"types"},
    {"xla_cpu", "threat", "losses", "parallel", "registries", "compile_cache", "event_file"},
    {"models", "data"},
    {"attacks"},
    {"methods"},
    {"evaluate"},
    {"configs"},
    {"train"},
    {"runs", "cli", "quickstart"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str | None:
  parts = module.split(".")
  if parts[0] != "jaxrobust" or len(parts) < 2:
    return None
  return parts[1]


def _imports(path: pathlib.Path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield node.lineno, a.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.lineno, node.module
      for a in node.names:
        yield node.lineno, f"{node.module}.{a.name}"


def test_every_unit_has_a_layer():
  units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
           if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and any(p.glob("*.py")))}
  assert units <= set(RANK), f"give these a layer in tests/test_layers.py: {sorted(units - set(RANK))}"


def test_no_module_imports_a_higher_layer():
  bad = []
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    own = _unit(".".join(rel.parts))
    if own is None or own == "__init__" or own not in RANK:  # the test above names it
      continue
    for lineno, target in _imports(path):
      unit = _unit(target)
      if unit is None or unit not in RANK or unit == own:
        continue
      if RANK[unit] > RANK[own]:
        bad.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} ({own}, layer {RANK[own]}) imports {target} "
                   f"(layer {RANK[unit]})")
  assert not bad, "upward imports:\n" + "\n".join(bad)


def test_every_package_folder_is_a_regular_package():
  # setuptools' find_packages skips folders without __init__.py: a plain `pip install .` would lose them.
  missing = [str(d.relative_to(PACKAGE.parent)) for d in PACKAGE.rglob("*")
             if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()]
  assert not missing, f"add __init__.py to {missing}"


def test_library_text_cites_papers_not_internal_notes():
  """Docstrings and comments cite papers (authors, year, equation); never the team's spec files or issues."""
  internal = re.compile(r"shared/spec|\b[a-z_]+\.md [A-D]\d|\bspec [A-D]\d|\b[Ii]ssue \d+|\bsession \d+")
  hits = [f"{p.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
          for p in sorted(PACKAGE.rglob("*.py"))
          for i, line in enumerate(p.read_text().splitlines(), 1) if internal.search(line)]
  assert not hits, "\n".join(hits)
