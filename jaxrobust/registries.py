"""Name -> entry registries gathered from the modules that declare ``REGISTRY`` dicts.

The attack and method registries share this: every listed module must import and declare
``REGISTRY``, a name may be registered once, names are looked up case-insensitively with '-' and
'_' interchangeable, and an unknown name is refused with the valid ones and the nearest match.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from typing import Callable, Iterable, TypeVar

Entry = TypeVar("Entry")


def canonical(name: str) -> str:
  """Lower case, '-' read as '_'."""
  return str(name).lower().replace("-", "_")


def collect(modules: Iterable[str], kind: str, check: Callable[[str, str, object], Entry]) -> dict[str, Entry]:
  """{name: check(module, name, entry)} over every module's ``REGISTRY``; a repeated name raises.

  Built once per (modules, kind, check): ``get_attack`` runs inside every evaluator batch of a
  host-side cascade, and the registries do not change while a process runs. Treat it as read-only.
  """
  return _collect(tuple(modules), kind, check)


@functools.lru_cache(maxsize=None)
def _collect(modules: tuple[str, ...], kind: str, check) -> dict:
  out: dict = {}
  for mod_name in modules:
    mod = importlib.import_module(mod_name)
    for name, entry in mod.REGISTRY.items():
      if name in out:
        raise RuntimeError(f"{kind} name {name!r} registered twice")
      out[name] = check(mod_name, name, entry)
  return out


def nearest(name: str, candidates: Iterable[str]) -> str | None:
  """The candidate closest to ``name`` (difflib), or None when none is close."""
  near = difflib.get_close_matches(name, list(candidates), n=1)
  return near[0] if near else None


def lookup(registry: dict[str, Entry], name: str, kind: str) -> Entry:
  """``registry[canonical(name)]``; an unknown name raises ValueError naming the nearest valid one."""
  key = canonical(name)
  if key in registry:
    return registry[key]
  near = nearest(key, registry)
  hint = f" (did you mean {near!r}?)" if near else ""
  raise ValueError(f"unknown {kind} {name!r}{hint}; available: {', '.join(sorted(registry))}")
