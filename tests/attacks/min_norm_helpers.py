"""A linear 2-class model whose minimum-norm adversarials have a closed form, for the FMN / DDN tests.

z(x) = [-s/2, s/2] with s = <w, vec(x)> + b: the smallest perturbation that flips the prediction has
||delta||_p = |s| / ||w||_q (q the dual norm: L1 for Linf, L2 for L2, Linf for L1) as long as the box
[0, 1] does not bind, which ``points`` ensures by keeping x in [0.3, 0.7] and the distances small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SHAPE = (4, 4, 1)
D = 16


def _apply(params, x):
  s = x.reshape(x.shape[0], -1) @ params["w"] + params["b"]
  return jnp.stack([-s / 2, s / 2], axis=1)


def linear_two_class(seed: int = 0, scale: float = 1.0):
  """(logits_fn, w, b): a Partial over (w, b), so compiled attacks are reused across calls."""
  w = np.random.default_rng(seed).normal(size=D).astype(np.float32) * scale
  b = np.float32(-0.5 * w.sum())  # s = <w, x - 0.5>: the boundary passes through the middle of the box
  return jax.tree_util.Partial(_apply, {"w": jnp.asarray(w), "b": jnp.asarray(b)}), w, b


def points(w, b, n: int, seed: int = 1):
  """(x, y, s): n points in [0.3, 0.7]^D labelled with the model's own prediction (all correct)."""
  x = np.random.default_rng(seed).uniform(0.3, 0.7, size=(n,) + SHAPE).astype(np.float32)
  s = x.reshape(n, -1).astype(np.float64) @ w.astype(np.float64) + float(b)
  return jnp.asarray(x), jnp.asarray((s > 0).astype(np.int32)), s


def closed_form(w, s, norm: str) -> np.ndarray:
  """|s| / ||w||_q per point."""
  w = np.asarray(w, np.float64)
  dual = {"l2": np.linalg.norm(w), "linf": np.abs(w).sum(), "l1": np.abs(w).max()}[norm]
  return np.abs(s) / dual


def norms_of(x_adv, x, norm: str) -> np.ndarray:
  d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
  return {"l2": np.linalg.norm(d, axis=1), "linf": np.abs(d).max(1), "l1": np.abs(d).sum(1)}[norm]


def predict(f, x) -> np.ndarray:
  return np.asarray(jnp.argmax(f(x), axis=1))
