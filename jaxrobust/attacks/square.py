"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020), score-based, L-inf, L2 and L1.

A port of ``autoattack/square.py`` (untargeted, margin loss, as AutoAttack runs it: p_init = 0.8, n_queries = 5000,
``resc_schedule=False``). Images are NHWC (B, H, W, C). With m(x') = z_y(x') - max_{j != y} z_j(x') (the margin;
a point is fooled when m <= 0):

L-inf:
    x_best = clip_[0,1](x + eps s),  s in {-1, +1}^(B x 1 x W x C)         (vertical stripes, per example)
    iteration i (only points with m(x_best) > 0 move):
      p_i = p_init / 2^j, j steps up after i = 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000   (``p_selection``)
      side s_i = max(round(sqrt(p_i H W)), 1) (at most min(H, W))
      ONE window (r, c) with r ~ U{0..H-s_i-1}, c ~ U{0..W-s_i-1} (0 if s_i = H) and ONE sign per channel
      sigma in {-1, +1}^C, shared by the whole batch (as in the reference)
      x_new = clip_[0,1](Pi_eps(x_best + 2 eps sigma 1_window))
      accept x_new iff m(x_new) < m(x_best) (strict) or m(x_new) <= 0
  so every delta_i stays on the corners {max(-eps, -x_i), min(eps, 1 - x_i)}.

L2 (reference ``attack_single_run``, norm 'L2'): the start is a grid of h//5-sized "eta" bumps with a random sign
per example, channel and block, scaled to ||delta||_2 = eps; each iteration moves the mass of one random window
(side max(round(sqrt(p H W)), 3), odd) into another window (sign per example and channel) and renormalises to
||delta||_2 = eps before the box clip.

L1 (Croce & Hein 2021, "Mind the box", the Square stage of AutoAttack's L1 'standard'; reference norm 'L1'): the
same grid and
window moves with L1 bumps (nested rectangles weighted 1/(k+1)^4, unit L1 norm). The start is the unscaled grid
and every candidate is mapped by the exact projection onto {||delta||_1 <= eps (1 - 1e-6)} n [0, 1]^d
(``threat.project_l1_box``, the reference's ``L1_projection``); a move gives window 1 the L1 mass
(max(eps - ||delta||_1, 0) / C + ||delta_{w1 u w2, c}||_1) C per channel c and empties window 2.

JAX design: the whole query loop is one ``lax.while_loop`` (``lax.scan`` when traces are recorded) on the full
batch; a mask stands in for the reference's gathering of the still-robust points, and the loop stops when
none are left. Window positions and channel signs come from ``fold_in(key, i)``, the per-example starting
stripes from ``fold_in(key, index_i)``, so a point's trajectory does not depend on which other points share its batch.
Per-example query counters count the initial evaluation plus one per iteration the point was active.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import as_partial, linf_or_l2, prepare_linf_or_l2
from jaxrobust.attacks.per_example import (absorb, active_buckets, expand, fold_keys, indexed_keys, keyed_batch,
                                          select)
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array

# The Square reference's stabiliser when it rescales a perturbation to ||delta||_2 = eps.
_STABILIZER = 1e-12

_P_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(it: int, p_init: float = 0.8, n_queries: int = 5000, rescale: bool = False) -> float:
  """Square's p at iteration ``it``: p_init / 2^j with j = #{thresholds t : it > t} (thresholds 10, 50, ..., 8000).

  With ``rescale`` the reference first maps it -> int(it / n_queries * 10000); AutoAttack turns that off.
  """
  if rescale:
    it = int(it / n_queries * 10000)
  j = sum(1 for t in _P_THRESHOLDS if it > t)
  return p_init / 2 ** j


def window_sizes(n_queries: int, h: int, w: int, p_init: float = 0.8, rescale: bool = False,
                 norm: str = "linf") -> np.ndarray:
  """(n_queries,) int side length of the square at each iteration (host-side, static)."""
  out = np.empty(n_queries, np.int32)
  for i in range(n_queries):
    p = p_selection(i, p_init, n_queries, rescale)
    s = int(round(math.sqrt(p * h * w)))
    if norm == "linf":
      s = max(s, 1)
    else:
      s = max(s, 3)
      s += 1 - s % 2  # odd
    out[i] = min(s, min(h, w))
  return out


def _unit(delta: np.ndarray, norm: str) -> np.ndarray:
  """delta / ||delta||_2 (norm 'l2') or delta / ||delta||_1 (norm 'l1'), as the reference normalises its bumps."""
  n = np.sqrt((delta ** 2).sum()) if norm == "l2" else np.abs(delta).sum()
  return delta / n if n > 0 else delta


def _eta_rectangles(x: int, y: int, norm: str = "l2") -> np.ndarray:
  """Nested rectangles with weights 1/(k+1)^2 (L2) or 1/(k+1)^4 (L1) around the centre, unit L2 / L1 norm
  (reference ``eta_rectangles``)."""
  power = 2 if norm == "l2" else 4
  delta = np.zeros((x, y))
  xc, yc = x // 2 + 1, y // 2 + 1
  c0, c1 = xc - 1, yc - 1
  for counter in range(max(xc, yc)):
    delta[max(c0, 0):min(c0 + 2 * counter + 1, x), max(0, c1):min(c1 + 2 * counter + 1, y)] += (
        1.0 / (counter + 1) ** power)
    c0 -= 1
    c1 -= 1
  return _unit(delta, norm)


def eta_pattern(s: int, norm: str = "l2") -> np.ndarray:
  """The L2 (or L1) bump of side s: +rectangles on the top half, -rectangles on the bottom, unit norm (``eta``
  without the random transpose, which is drawn in the attack)."""
  delta = np.zeros((s, s))
  delta[: s // 2] = _eta_rectangles(s // 2, s, norm)
  delta[s // 2:] = -_eta_rectangles(s - s // 2, s, norm)
  return _unit(delta, norm)


def _margin(logits: Array, y: Array) -> Array:
  return losses_lib.margin(logits, y)


def _rand_int(key, high: Array) -> Array:
  """The reference's random_int(0, high): floor(high * U[0, 1)), i.e. 0..high-1 (0 when high = 0)."""
  return jnp.floor(high * jax.random.uniform(key, ())).astype(jnp.int32)


def _window(h: int, w: int, r: Array, c: Array, s: Array) -> Array:
  """(H, W) bool mask of the s x s window at (r, c); s is traced, so a mask rather than a dynamic slice."""
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  return (rows >= r) & (rows < r + s) & (cols >= c) & (cols < c + s)


class SquareTrace(NamedTuple):
  """x_best (B, H, W, C); margin (B,) = m(x_best); n_queries (B,) int; margin_steps (n_queries + 1, B): m(x_best)
  at the start and after every iteration (when recorded), else None."""
  x_best: Array
  margin: Array
  n_queries: Array
  margin_steps: Optional[Array]


def _linf_run(logits_fn, x, y, key, ex_keys, active, eps, sizes, n_iter, *, record, state=None, start=0):
  b, h, w, c = x.shape
  e = expand(eps, x)
  if state is None:
    stripes = jax.vmap(lambda k: jnp.sign(jax.random.uniform(k, (1, w, c), x.dtype, -1.0, 1.0)))(ex_keys)
    x_best = jnp.clip(x + e * stripes, 0.0, 1.0)
    state = (x_best, _margin(logits_fn(x_best), y), jnp.ones((b,), jnp.int32))
  x_best, m_best, n_q = state
  sizes_j = jnp.asarray(sizes)

  def step(i, x_best, m_best, n_q):
    todo = active & (m_best > 0)
    k = jax.random.fold_in(key, i)
    kr, kc, ks = jax.random.split(k, 3)
    s = sizes_j[i]
    r0 = _rand_int(kr, h - s)
    c0 = _rand_int(kc, w - s)
    sigma = jnp.sign(jax.random.uniform(ks, (c,), x.dtype, -1.0, 1.0))
    win = _window(h, w, r0, c0, s)[None, :, :, None]
    x_new = threat.project_ball_and_box(x_best + win * (2.0 * e * sigma), x, eps, "linf")
    m_new = _margin(logits_fn(x_new), y)
    return _accept(todo, x_new, m_new, x_best, m_best, n_q)

  return _loop(step, x_best, m_best, n_q, active, n_iter, record, start)


def _accept(todo, x_new, m_new, x_best, m_best, n_q):
  """Square's acceptance for the points still attacked (todo): x_new replaces x_best iff its margin is lower or
  it fools the model (m <= 0); every attacked point spends one query."""
  accept = todo & ((m_new < m_best) | (m_new <= 0))
  return select(accept, x_new, x_best), jnp.where(accept, m_new, m_best), n_q + todo.astype(jnp.int32)


def _loop(step, x_best, m_best, n_q, active, n_iter, record, start=0):
  """Runs ``step`` for iterations start..n_iter-1: a scan that records m(x_best) per iteration (start = 0), or a
  while_loop that stops early once no active point is left (the reference's ``break``)."""
  if record:
    def body(carry, i):
      carry = step(i, *carry)
      return carry, carry[1]
    m0 = m_best
    (x_best, m_best, n_q), ms = jax.lax.scan(body, (x_best, m_best, n_q), jnp.arange(n_iter))
    return SquareTrace(x_best, m_best, n_q, jnp.concatenate([m0[None], ms], 0))

  def cond(carry):
    i, _, m_best, _ = carry
    return (i < n_iter) & jnp.any(active & (m_best > 0))

  def body(carry):
    i, x_best, m_best, n_q = carry
    return (i + 1,) + step(i, x_best, m_best, n_q)

  _, x_best, m_best, n_q = jax.lax.while_loop(cond, body, (jnp.asarray(start, jnp.int32), x_best, m_best, n_q))
  return SquareTrace(x_best, m_best, n_q, None)


def _grid_delta(x, ex_keys, key, norm):
  """Grid of h//5 eta bumps (random sign per example/channel/block, random transpose per block), unscaled."""
  b, h, w, c = x.shape
  s = h // 5
  if s < 1:
    raise ValueError(f"Square {norm.upper()} needs images of height >= 5; got {h}")
  sp = (h - s * 5) // 2
  base = eta_pattern(s, norm)
  val = np.zeros((h, w))
  val_t = np.zeros((h, w))
  block = -np.ones((h, w), np.int32)
  nb = 0
  vh = sp
  for _ in range(h // s):
    vw = sp
    for _ in range(w // s):
      # Python slicing truncates windows that run past the border, as in the reference.
      rh, rw = slice(vh, min(vh + s, h)), slice(vw, min(vw + s, w))
      ph, pw = rh.stop - rh.start, rw.stop - rw.start
      if ph > 0 and pw > 0:
        val[rh, rw] = base[:ph, :pw]
        val_t[rh, rw] = base.T[:ph, :pw]
        block[rh, rw] = nb
      nb += 1
      vw += s
    vh += s
  nb = max(nb, 1)
  flips = jax.random.uniform(jax.random.fold_in(key, 2**31 - 3), (nb,)) > 0.5  # the per-block transpose
  blk = jnp.asarray(np.maximum(block, 0))
  pattern = jnp.where(flips[blk], jnp.asarray(val_t, x.dtype), jnp.asarray(val, x.dtype))
  pattern = jnp.where(jnp.asarray(block >= 0), pattern, 0.0)
  signs = jax.vmap(lambda k: jnp.sign(jax.random.uniform(k, (nb, c), x.dtype, -1.0, 1.0)))(ex_keys)  # (B, nb, C)
  return pattern[None, :, :, None] * signs[:, blk, :]


def _l1_ball_box(x, delta, eps):
  """The reference's x + delta + L1_projection(x, delta, eps (1 - 1e-6)): the nearest point of the L1 ball
  (radius shrunk by 1e-6 against rounding) intersected with the [0, 1] box."""
  return threat.project_l1_box(x + delta, x, eps * (1.0 - 1e-6))


def _start(x, eps, ex_keys, key, norm):
  """L2: the grid scaled to ||delta||_2 = eps, box-clipped; L1: the grid projected onto the L1 ball and box."""
  delta = _grid_delta(x, ex_keys, key, norm)
  if norm == "l1":
    return _l1_ball_box(x, delta, eps)
  return jnp.clip(x + _normalize_l2(delta) * expand(eps, x), 0.0, 1.0)


def _normalize_l2(d):
  """d / (||d||_2 + 1e-12) per example (the reference's rescaling)."""
  return threat.normalize_gradient(d, "l2", _STABILIZER)


def _window_mass(d, mask, norm):
  """(B, 1, 1, C): the L2 (or L1) norm of d inside mask, per example and channel."""
  if norm == "l1":
    return jnp.sum(jnp.where(mask, jnp.abs(d), 0.0), axis=(1, 2), keepdims=True)
  return jnp.sqrt(jnp.sum(jnp.where(mask, d * d, 0.0), axis=(1, 2), keepdims=True))


def _mass_run(logits_fn, x, y, key, ex_keys, active, eps, sizes, n_iter, *, record, norm, state=None, start=0):
  """Square L2 / L1: every iteration moves the mass of one random window into a fresh bump there, empties a
  second window, and returns to the ball (L2: rescale to eps, then box clip; L1: projection on ball n box)."""
  b, h, w, c = x.shape
  e2 = eps * eps
  if state is None:
    x_best = _start(x, eps, ex_keys, key, norm)
    state = (x_best, _margin(logits_fn(x_best), y), jnp.ones((b,), jnp.int32))
  x_best, m_best, n_q = state
  smax = int(sizes.max())
  distinct = sorted(set(int(v) for v in sizes))
  table = np.zeros((len(distinct), smax, smax))
  for j, s in enumerate(distinct):
    table[j, :s, :s] = eta_pattern(s, norm)
  table = jnp.asarray(table, x.dtype)
  size_idx = jnp.asarray([distinct.index(int(v)) for v in sizes], jnp.int32)
  sizes_j = jnp.asarray(sizes)

  def place(patch, r0, c0):
    canvas = jnp.zeros((h + smax, w + smax), x.dtype)
    return jax.lax.dynamic_update_slice(canvas, patch, (r0, c0))[:h, :w]

  def step(i, x_best, m_best, n_q):
    todo = active & (m_best > 0)
    k = jax.random.fold_in(key, i)
    k1, k2, k3, k4, kt = jax.random.split(k, 5)
    s = sizes_j[i]
    r1, c1 = _rand_int(k1, h - s), _rand_int(k2, w - s)
    r2, c2 = _rand_int(k3, h - s), _rand_int(k4, w - s)
    delta = x_best - x
    m1 = _window(h, w, r1, c1, s)[None, :, :, None]
    m2 = _window(h, w, r2, c2, s)[None, :, :, None]
    nw1 = _window_mass(delta, m1, norm)
    norm_img = threat.per_example_norm(delta, norm)
    patch = table[size_idx[i]]
    patch = jnp.where(jax.random.uniform(kt, ()) > 0.5, patch.T, patch)
    eta_img = place(patch, r1, c1)[None, :, :, None]
    # Signs per example and channel (the reference draws random_choice([B, c, 1, 1]) here).
    sig = jax.vmap(lambda kk: jnp.sign(jax.random.uniform(jax.random.fold_in(kk, i), (c,), x.dtype, -1.0, 1.0)))(
        ex_keys)[:, None, None, :]
    new = eta_img * sig + jnp.where(m1, delta, 0.0) / (1e-12 + nw1)
    new_norm = _window_mass(new, m1, norm)
    if norm == "l1":
      # The reference's L1 mass is per channel: (max(eps - ||delta||_1, 0) / C + ||delta_{w1 u w2, c}||_1) C.
      scale = (jnp.maximum(expand(eps - norm_img, x), 0.0) / c + _window_mass(delta, m1 | m2, norm)) * c
    else:
      norm_win = threat.per_example_norm(jnp.where(m1 | m2, delta, 0.0), "l2")
      scale = expand(jnp.sqrt(jnp.maximum(e2 - norm_img ** 2, 0.0) / c + norm_win ** 2), x)
    new = new / (1e-12 + new_norm) * scale
    delta = jnp.where(m1, new, jnp.where(m2, 0.0, delta))
    if norm == "l1":
      x_new = _l1_ball_box(x, delta, eps)
    else:
      x_new = jnp.clip(x + _normalize_l2(delta) * expand(eps, x), 0.0, 1.0)
    m_new = _margin(logits_fn(x_new), y)
    return _accept(todo, x_new, m_new, x_best, m_best, n_q)

  return _loop(step, x_best, m_best, n_q, active, n_iter, record, start)


_STATIC = ("norm", "n_queries", "p_init", "n_restarts", "rescale_schedule", "record")
# Compaction: queries run in chunks of CHUNK_QUERIES iterations on the points still attacked, gathered into
# buckets of a power-of-two number of rows (at least MIN_BUCKET), so a compiled chunk exists per bucket size.
CHUNK_QUERIES = 250
MIN_BUCKET = 8


def square_masked(logits_fn, x, y, key, index, active, eps, *, norm="linf", n_queries=5000, p_init=0.8,
                  n_restarts=1, rescale_schedule=False, record=False, compact=True):
  """Masked core for ``square`` and AutoAttack. Returns (x_adv, fooled) (+ the last restart's trace if record).

  fooled = active & clean-correct & argmax z(x_adv) != y; x_adv = Square's point where fooled, x elsewhere.
  compact (concrete inputs, no record): the query loop runs in chunks on the points still attacked only
  (``_square_compacted``); the result is the same, the cost follows the still-robust count. Under a trace
  (inside ``jax.jit``) the whole batch runs as one program.
  """
  inputs = jax.tree.leaves((logits_fn, x, y, key, index, active, eps))
  concrete = not any(isinstance(a, jax.core.Tracer) for a in inputs)
  if compact and concrete and not record and jax.process_count() == 1:  # the host reads every point
    return _square_compacted(logits_fn, x, y, key, index, active, eps, norm=norm, n_queries=int(n_queries),
                             p_init=float(p_init), n_restarts=int(n_restarts),
                             rescale_schedule=bool(rescale_schedule))
  # jit keys its cache on the *set* of static kwargs passed, so always pass all of them.
  return _square_masked_jit(logits_fn, x, y, key, index, active, eps, norm=norm, n_queries=int(n_queries),
                            p_init=float(p_init), n_restarts=int(n_restarts),
                            rescale_schedule=bool(rescale_schedule), record=bool(record))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _square_masked_jit(logits_fn, x, y, key, index, active, eps, *, norm, n_queries, p_init, n_restarts,
                       rescale_schedule, record):
  b, h, w, c = x.shape
  # sizes[i] is the side at iteration i; one dummy entry keeps the tables non-empty when n_queries = 0.
  sizes = window_sizes(max(n_queries, 1), h, w, p_init, rescale_schedule, norm)
  ex_keys = indexed_keys(key, index)
  correct = losses_lib.predict(logits_fn(x)) == y
  still = active & correct
  run = _linf_run if norm == "linf" else functools.partial(_mass_run, norm=norm)
  adv = x
  trace = None
  for r in range(n_restarts):  # static and almost always 1 (AutoAttack)
    trace = run(logits_fn, x, y, jax.random.fold_in(key, r), fold_keys(ex_keys, r), still, eps, sizes, n_queries,
                record=record)
    still, adv = absorb(still, adv, trace.x_best, losses_lib.predict(logits_fn(trace.x_best)) != y)
  fooled = active & correct & ~still
  if record:
    return adv, fooled, trace
  return adv, fooled


def _run_fn(norm):
  return _linf_run if norm == "linf" else functools.partial(_mass_run, norm=norm)


@functools.partial(jax.jit, static_argnames=("norm", "n_queries", "p_init", "rescale_schedule", "resume"))
def _square_chunk_jit(logits_fn, x, y, key, ex_keys, active, eps, state, start, stop, *, norm, n_queries, p_init,
                      rescale_schedule, resume):
  """Iterations start..stop-1 of one Square run on a bucket of points (the start point first unless resume)."""
  sizes = window_sizes(max(n_queries, 1), x.shape[1], x.shape[2], p_init, rescale_schedule, norm)
  trace = _run_fn(norm)(logits_fn, x, y, key, ex_keys, active, eps, sizes, stop, record=False,
                        state=state if resume else None, start=start)
  return trace.x_best, trace.margin, trace.n_queries


@jax.jit
def _predictions(logits_fn, x):
  return losses_lib.predict(logits_fn(x))


def _bucket_rows(n: int, batch: int) -> int:
  return min(batch, max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length()))


def _square_compacted(logits_fn, x, y, key, index, active, eps, *, norm, n_queries, p_init, n_restarts,
                      rescale_schedule):
  """``_square_masked_jit`` with the still-attacked points re-gathered every CHUNK_QUERIES iterations.

  Every random draw of Square depends on the iteration and the point (``fold_in(key, i)``, per-example keys), never
  on the other points of the batch, so a point's trajectory is the same in any bucket.
  """
  b = x.shape[0]
  eps_b = jnp.broadcast_to(jnp.asarray(eps, x.dtype), (b,))
  ex_keys = indexed_keys(key, index)
  still = np.asarray(active) & (np.asarray(_predictions(logits_fn, x)) == np.asarray(y))
  adv = x
  statics = dict(norm=norm, n_queries=n_queries, p_init=p_init, rescale_schedule=rescale_schedule)
  for r in range(n_restarts):
    run_key, run_ex_keys = jax.random.fold_in(key, r), fold_keys(ex_keys, r)
    parts = (x, y, run_ex_keys, eps_b)
    state = None
    start = 0
    while True:
      todo = still if state is None else still & (np.asarray(state[1]) > 0)
      if not todo.any() or (state is not None and start >= n_queries):
        break
      (index_rows, valid), = active_buckets(todo, _bucket_rows(int(todo.sum()), b))
      xs, ys, ks, es = (a[index_rows] for a in parts)
      sub_state = None if state is None else tuple(a[index_rows] for a in state)
      stop = 0 if state is None else min(start + CHUNK_QUERIES, n_queries)
      out = _square_chunk_jit(logits_fn, xs, ys, run_key, ks, jnp.asarray(valid), es, sub_state, start, stop,
                              resume=state is not None, **statics)
      if state is None:  # the start points of every still-robust point: one query each
        state = (jnp.zeros_like(x), jnp.zeros((b,), out[1].dtype), jnp.zeros((b,), jnp.int32))
      rows = index_rows[valid]
      state = tuple(full.at[rows].set(part[valid]) for full, part in zip(state, out))
      start = stop
    if state is None:  # nothing to attack in this restart
      continue
    x_best = jnp.where(expand(jnp.asarray(still), x), state[0], x)
    fooled = np.asarray(_predictions(logits_fn, x_best)) != np.asarray(y)
    still_j, adv = absorb(jnp.asarray(still), adv, x_best, jnp.asarray(fooled))
    still = np.asarray(still_j)
  correct = np.asarray(_predictions(logits_fn, x)) == np.asarray(y)
  fooled = np.asarray(active) & correct & ~still
  return adv, jnp.asarray(fooled)


_NORMS = ("linf", "l2", "l1")


def _prepare(logits_fn, x, y, eps, norm):
  norm = linf_or_l2(norm, "Square", _NORMS)
  if x.ndim != 4:
    raise ValueError(f"Square needs NHWC images (B, H, W, C); got shape {x.shape}")
  if norm != "linf" and x.shape[1] < 5:
    raise ValueError(f"Square {norm.upper()} needs images of height >= 5 (its start is a grid of height // 5 "
                     f"bumps); got shape {x.shape}")
  norm, eps_v, _ = prepare_linf_or_l2(logits_fn, x, y, eps, norm, "Square", 2, norms=_NORMS)
  return norm, eps_v


def square(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", n_queries: int = 5000, p_init: float = 0.8,
           n_restarts: int = 1, rescale_schedule: bool = False, compact: bool = True) -> Array:
  """Square Attack (margin loss, untargeted). x: (B, H, W, C) in [0, 1]; eps scalar or (B,).

  Returns x_adv: Square's point for the fooled points, the clean x elsewhere (AutoAttack's convention).
  compact: called outside ``jax.jit``, run the queries on the still-robust points only (same result, less work).
  """
  norm, eps_v = _prepare(logits_fn, x, y, eps, norm)
  adv, _ = square_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v, norm=norm,
                         n_queries=n_queries, p_init=float(p_init), n_restarts=n_restarts,
                         rescale_schedule=rescale_schedule, compact=compact)
  return adv


def square_run(logits_fn, x: Array, y: Array, key, *, eps, norm="linf", n_queries: int = 5000,
               p_init: float = 0.8, rescale_schedule: bool = False) -> SquareTrace:
  """One Square run with traces: x_best, m(x_best), per-example query counts and the margin after every
  iteration (n_queries, B). Points misclassified when clean do not move."""
  norm, eps_v = _prepare(logits_fn, x, y, eps, norm)
  _, _, trace = square_masked(as_partial(logits_fn), x, y, *keyed_batch(key, x), eps_v,
                              norm=norm, n_queries=n_queries, p_init=float(p_init), n_restarts=1,
                              rescale_schedule=rescale_schedule, record=True)
  return trace


REGISTRY = {
    "square": AttackInfo(configured(square), norms=_NORMS, box="black", compacts=True,
                         summary="Square attack, score-based random search (Andriushchenko et al. 2020; L1: "
                                 "Croce & Hein 2021)"),
}
