"""Model selection: the best of a stream of score records.

A record is a dict holding a score under a metric name, e.g. ``{'epoch': 3, 'val_robust_ap': 0.41}``
or ``{'step': 500, 'score': 0.87}``. The best is the record with the largest finite score, the
earliest on ties (the strict ``>`` of the AdAP reference code, Li, Tong & Yang 2023, which selects
the epoch of the best validation robust AP); a NaN or missing score never wins. The same rule picks
the epoch of a finished list (``select_best``) and, during training, decides whether a new score
replaces the kept checkpoint (``improves``); ``ScoreLog`` keeps the stream in a JSON-lines file so a
resumed run knows what it already scored.
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence


def improves(score, best_score) -> bool:
  """True iff ``score`` is finite and strictly above ``best_score`` (None: nothing kept yet)."""
  if score is None or not math.isfinite(score):
    return False
  return best_score is None or score > best_score


def select_best(records: Sequence[dict], metric: str) -> dict:
  """The first record with the largest finite ``metric``; ValueError if no record has one."""
  best = None
  for r in records:
    if improves(r.get(metric), None if best is None else best[metric]):
      best = r
  if best is None:
    raise ValueError(f"no record has a finite {metric!r}; got {len(records)} records")
  return best


class ScoreLog:
  """Score records appended to a JSON-lines file, one line per scoring, read back on resume.

  ``write=False`` (processes other than the main one) reads but never appends.
  """

  def __init__(self, path: str, *, write: bool = True):
    self.path = path
    self.write = write

  def records(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def append(self, record: dict) -> None:
    if self.write:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
