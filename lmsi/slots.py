"""Continuous batching: paths decoded in a fixed set of slots (LMSI stage 3).

`sampling.generate` prefills each question's prompt once; `decode` draws its
paths. Each of N slots holds one (question, sample) path: a KV cache per
layer of [question prompt | generated tokens], the next token's logits and
the path's position. Steps run `CHUNK` at a time inside jit; between chunks
the host gives every finished slot the next pending path (its question's
prompt cache copied from the prefill), so no slot idles while paths wait.

Attention reads what is filled: the generated part of the cache is a bucket
just long enough for the longest live path (32, 64, 128, ...), not
`max_decode_steps`. When no path is pending the slots shrink as they empty
(a few smaller compiled shapes), so the drain runs few idle rows.

Drafted tokens (`lmsi.draw`): a step may also feed tokens guessed from a
slot's own history, kept only where they are the tokens drawn anyway.

No computation mixes slots, masked keys add exact zeros, and the token at
position t of sample s of question q is drawn with fold_in(key(q, s), t):
tokens do not depend on the slot count, on which slot a path lands in, or on
which paths share a chunk; drafts depend only on the path's own history.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from lmsi import decoder as decoder_lib
from lmsi import draw
from lmsi import layers
from lmsi import sharding
from lmsi.sharding import CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH, KV

CHUNK = 4  # steps per jit call: a finished path idles < CHUNK steps.
MIN_BUCKET = 32  # shortest generated-cache bucket


@dataclasses.dataclass(frozen=True)
class Sampler:
  """The static settings of the decode loop (part of the jit key)."""

  temperature: float
  top_k: int
  top_p: float
  eos_id: int
  max_steps: int
  draft: int = 0  # most tokens drafted a step by prompt lookup (0: none)
  draft_rows: int = 32  # rows a step may reach by drafting (N (D + 1))


@dataclasses.dataclass(frozen=True)
class Paths:
  """What `decode` returns (numpy, on host)."""

  tokens: np.ndarray  # int32 [B, S, max_steps], 0 after the end.
  lengths: np.ndarray  # int32 [B, S] incl. the EOS/stop token.
  logprobs: np.ndarray  # float32 [B, S]
  row_steps: int  # slot-steps run, idle ones included
  live_steps: int  # slot-steps of a live path (lengths.sum() without drafts)
  gen_lengths: tuple[int, ...]  # the generated-cache bucket of each chunk
  drawn: np.ndarray  # int32 [B] samples kept per question (early stop)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _empty(cfg, slots: int, length: int, num_stops: int,
           history: int = 0) -> dict:
  """Slot state with every slot free (done), made by one compiled call
  rather than 2 x num_layers + 8 dispatches. `history`: the width of each
  slot's token history (prompt, then path) that drafts are looked up in."""
  return dict(
      cache=tuple(layers.empty_slot_cache(cfg, slots, length)
                  for _ in range(cfg.num_layers)),
      logits=jnp.zeros((slots, cfg.vocab_size), jnp.float32),
      keys=jnp.zeros((slots, 2), jnp.uint32),
      step=jnp.zeros((slots,), jnp.int32),  # position within the path
      prompt_len=jnp.zeros((slots,), jnp.int32),
      done=jnp.ones((slots,), bool),
      logprob=jnp.zeros((slots,), jnp.float32),
      stop_state=jnp.zeros((slots, num_stops), jnp.int32),
      hist=jnp.zeros((slots, history), jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(4,))
def _chunk(cfg, sampler, prompt_pad, params, state, prefix_kv, stop_next,
           stop_hit):
  """CHUNK decoding steps of every slot. Returns (state, int32 [N, CHUNK
  (D + 1)] tokens made, each slot's from its first column on, int32 [N]
  steps each slot ran with a live path)."""
  model = decoder_lib.Decoder(cfg)
  slots, length = state['cache'][0][0].shape[0], state['cache'][0][0].shape[3]
  # prefix_kv is in `layers.decode_prefix`'s layout: k [Hkv, Dh, E].
  offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[2]
  which = jnp.arange(stop_next.shape[0])
  rows = jnp.arange(slots)
  idx = jnp.arange(length)
  ahead = jnp.arange(sampler.draft + 1)  # the new token, then the drafts
  width = CHUNK * (sampler.draft + 1)
  first = state['step']  # out[:, j] is the token at position first + j
  # Positions stay below offset + length: cos/sin once, outside the loop.
  table = layers.rotary_angles(jnp.arange(offset + length), cfg.head_dim,
                               cfg.rope_theta, cfg.dtype)

  def pick(logits, keys, t):
    keys = jax.vmap(jax.random.fold_in)(keys, t)
    return draw.choose(logits, keys, sampler.temperature, sampler.top_k,
                       sampler.top_p).astype(jnp.int32)

  def ends(stop_state, token, t):
    """(the path ends with `token` at position t, the next stop state)."""
    hit = stop_hit[which, stop_state, token[:, None]]  # [N, stops]
    return ((token == sampler.eos_id) | jnp.any(hit, axis=-1)
            | (t + 1 >= sampler.max_steps),
            stop_next[which, stop_state, token[:, None]])

  def body(_, carry):
    s, out, ran = carry
    t, live = s['step'], ~s['done']
    token = jnp.where(live, pick(s['logits'], s['keys'], t), 0)
    logprob = s['logprob'] + jnp.where(
        live, draw.logprob(s['logits'], token), 0.0)
    finished, stop_state = ends(s['stop_state'], token, t)
    out = out.at[rows, t - first].set(token, mode='drop')
    start = offset + s['prompt_len']  # the path's first index in hist
    hist = s['hist']
    fed = token[:, None]
    if sampler.draft:
      hist = hist.at[rows, start + t].set(token, mode='drop')
      drafts = draw.lookup(hist, start + t, sampler.draft)
      fed = jnp.concatenate([fed, drafts], axis=1)
    write = jnp.minimum(prompt_pad + t[:, None] + ahead, length - 1)
    # [N, D + 1, L]: the slot's prompt tokens, then its path up to the token.
    valid = ((idx < s['prompt_len'][:, None, None])
             | ((idx >= prompt_pad) & (idx <= write[..., None])))
    logits, cache = model.apply(
        {'params': params}, fed, offset + s['prompt_len'][:, None] + t[:, None]
        + ahead, s['cache'], write, valid, prefix_kv, table,
        method=decoder_lib.Decoder.decode)
    count = live.astype(jnp.int32)  # tokens made this step
    going = live & ~finished
    after = logits[:, 0]  # the logits after the last token made
    for i in range(1, sampler.draft + 1):
      # Keep draft i only if it is the token drawn at position t + i.
      guess = fed[:, i]
      ok = going & (pick(logits[:, i - 1], s['keys'], t + i) == guess)
      logprob += jnp.where(ok, draw.logprob(logits[:, i - 1], guess), 0.0)
      end, nxt = ends(stop_state, guess, t + i)
      stop_state = jnp.where(ok[:, None], nxt, stop_state)
      finished |= ok & end
      after = jnp.where(ok[:, None], logits[:, i], after)
      count += ok
      out = out.at[rows, jnp.where(ok, t + i - first, width)].set(
          guess, mode='drop')
      hist = hist.at[rows, jnp.where(ok, start + t + i, hist.shape[1])].set(
          guess, mode='drop')
      going = ok & ~end
    s = dict(s, cache=cache, logits=after, step=t + count,
             done=s['done'] | finished, logprob=logprob,
             stop_state=stop_state, hist=hist)
    return s, out, ran + live

  out = jnp.zeros((slots, width), jnp.int32)
  return jax.lax.fori_loop(0, CHUNK, body,
                           (state, out, jnp.zeros((slots,), jnp.int32)))


@functools.partial(jax.jit, donate_argnums=(0,))
def _refill(state, slot, question, keys, prompt_kv, prompt_len, last_logits,
            history):
  """Starts path (question[i], keys[i]) in slot[i]; slot == N: no-op row."""
  pad = prompt_kv[0][0].shape[1]
  put = lambda x, value: x.at[slot].set(value, mode='drop')
  cache = []
  for (k, v), (pk, pv) in zip(state['cache'], prompt_kv):
    # [K, P, Hkv, Dh] -> k [K, Hkv, Dh, P], v [K, Hkv, P, Dh]
    k = k.at[slot, :, :, :pad].set(
        jnp.transpose(pk[question], (0, 2, 3, 1)), mode='drop')
    v = v.at[slot, :, :pad, :].set(jnp.swapaxes(pv[question], 1, 2),
                                   mode='drop')
    cache.append((k, v))
  zero = jnp.zeros_like(slot)
  return dict(
      cache=tuple(cache), logits=put(state['logits'], last_logits[question]),
      keys=put(state['keys'], keys), step=put(state['step'], zero),
      prompt_len=put(state['prompt_len'], prompt_len[question]),
      done=put(state['done'], False),
      logprob=put(state['logprob'], zero.astype(jnp.float32)),
      stop_state=put(state['stop_state'], 0),
      hist=put(state['hist'], history[question]))


@functools.partial(jax.jit, static_argnums=(1,))
def _resize(state, length):
  """The cache cut or zero-padded to L = `length` (live entries kept)."""
  def fit(x, axis):  # lax.pad cuts where the padding is negative
    return jax.lax.pad(x, jnp.zeros((), x.dtype), [
        (0, length - x.shape[axis] if a == axis else 0, 0)
        for a in range(x.ndim)])
  return dict(state, cache=tuple((fit(k, 3), fit(v, 2))
                                 for k, v in state['cache']))


@jax.jit
def _take(state, index):
  """Keeps the slots `index` (int [N']), in that order."""
  return jax.tree_util.tree_map(lambda x: x[index], state)


def state_specs(state: dict) -> dict:
  """Logical specs of a slot state: slots over data, cache heads over model."""
  return dict({k: PartitionSpec(CACHE_BATCH) for k in state},
              cache=tuple((PartitionSpec(CACHE_BATCH, CACHE_HEADS, KV,
                                         CACHE_LENGTH),
                           PartitionSpec(CACHE_BATCH, CACHE_HEADS,
                                         CACHE_LENGTH, KV))
                          for _ in state['cache']))


def _place(mesh: Mesh | None, state: dict) -> dict:
  """Slots over the data axis, cache heads over 'model' (the axis table)."""
  if mesh is None:
    return state
  return jax.device_put(state, sharding.shardings_for(
      state_specs(state), mesh, sharding.logical_axis_rules(for_sampling=True),
      shapes=state))


def _drain_slots(live: int, num_slots: int, multiple: int) -> int:
  """How many slots the drain keeps for `live` paths (few distinct counts).

  Steps of num_slots / 8 (at most 1/8 of the slots idle), then halving: at
  most ~10 compiled shapes, none below 16 slots (compiles would cost more).
  """
  if num_slots < 16:
    return num_slots
  step = -(-max(8, num_slots // 8) // multiple) * multiple
  if live > step:
    return -(-live // step) * step
  fewer = multiple
  while fewer < live:
    fewer *= 2
  return min(fewer, step)


_decode_prefix = jax.jit(layers.decode_prefix)  # once per `decode`


def _bucket(need: int, max_steps: int) -> int:
  size = MIN_BUCKET
  while size < need:
    size *= 2
  return min(size, max_steps)


def decode(cfg: decoder_lib.DecoderConfig, params: Any, *,
           last_logits: jax.Array, prompt_kv: Any, prompt_len: np.ndarray,
           keys: np.ndarray, sampler: Sampler, stop_next: np.ndarray,
           stop_hit: np.ndarray, prefix_kv: Any, num_slots: int,
           history: np.ndarray | None = None, mesh: Mesh | None = None,
           decided: Callable[[int, list[np.ndarray]], bool] | None = None,
           check_every: int = 0) -> Paths:
  """Draws S paths for each of B prefilled prompts in `num_slots` slots.

  Args:
    cfg, params: the model.
    last_logits: float32 [B, V], `Decoder.prefill`'s logits.
    prompt_kv: per-layer (k, v) [B, P, Hkv, Dh] from the prefill.
    prompt_len: int [B] valid (right-padded) tokens of each prompt.
    keys: uint32 [B, S, 2], the key of each (question, sample) path.
    sampler: temperature, top-k/p, EOS id, max_decode_steps.
    stop_next, stop_hit: `sampling.stop_tables`.
    prefix_kv: per-layer (k, v) [E, Hkv, Dh] shared by all, or None.
    num_slots: N, a multiple of the mesh's data axis.
    history: int [B, H] each prompt's ids, the shared prefix's included,
      right-padded: drafts are looked up in it (if `sampler.draft` > 0).
    mesh: slots are sharded over its data axis, cache heads over 'model'
      (call within the mesh and its logical-axis rules).
    decided, check_every: the early-stopped vote (off when `decided` is
      None). Once samples 0 .. k-1 of question q have all finished, for k =
      check_every, 2 check_every, ... < S, `decided(q, their tokens)` is
      asked; if True, q's samples k .. S-1 are dropped (pending ones never
      start, running ones are abandoned). The decision sees only those
      first k paths, so which samples are drawn does not depend on slots.
      Paths are queued in waves of `check_every` samples over all
      questions, so dropped samples have mostly not started.

  Returns:
    `Paths`, in the order of `keys`; `drawn` says how many samples of each
    question were kept (S without early stopping).
  """
  batch, samples = keys.shape[:2]
  multiple = 1 if mesh is None else mesh.shape[sharding.DATA]
  place = functools.partial(_place, mesh)
  steps = sampler.max_steps
  pad = prompt_kv[0][0].shape[1]
  if sampler.draft:  # each slot's token history: its prompt, then its path
    if history is None:
      raise ValueError('sampler.draft > 0 needs `history`, the prompt ids')
    history = np.pad(history, ((0, 0), (0, steps + sampler.draft)))
  else:
    history = np.zeros((batch, 0))
  history = jnp.asarray(history, jnp.int32)
  every = check_every if decided is not None and check_every > 0 else samples
  # Waves of `every` samples: all questions' samples 0.., then the next
  # wave, so the samples an early stop drops are still pending, not running
  # (without early stopping: question-major).
  pending = collections.deque(sorted(
      ((q, s) for q in range(batch) for s in range(samples)),
      key=lambda p: (p[1] // every, p[0], p[1])))
  tokens = np.zeros((batch, samples, steps), np.int32)
  lengths = np.zeros((batch, samples), np.int32)
  logprobs = np.zeros((batch, samples), np.float32)
  n = num_slots
  held: list[tuple[int, int] | None] = [None] * n
  at = np.zeros(n, np.int64)  # host copy of each slot's step
  gen = _bucket(CHUNK, steps)
  state = place(_empty(cfg, n, pad + gen, stop_next.shape[0],
                       history.shape[1]))
  if prefix_kv is not None:
    prefix_kv = _decode_prefix(prefix_kv)
  row_steps, live_steps, buckets = 0, 0, []
  drawn = np.full(batch, samples, np.int32)
  checked = np.zeros(batch, np.int32)  # samples already judged undecided
  finished = np.zeros((batch, samples), bool)
  while True:
    free = [i for i in range(n) if held[i] is None][:len(pending)]
    if free:
      pairs = [pending.popleft() for _ in free]
      rows = 1
      while rows < len(free):  # few compiled shapes: 1, 4, 16, ..., n
        rows *= 4
      rows = min(rows, n)
      slot = np.full(rows, n, np.int32)  # n: a no-op row
      slot[:len(free)] = free
      question = np.zeros(rows, np.int32)
      question[:len(free)] = [q for q, _ in pairs]
      new_keys = np.zeros((rows, 2), np.uint32)
      new_keys[:len(free)] = [keys[q, s] for q, s in pairs]
      state = place(_refill(state, slot, question, new_keys, prompt_kv,
                            prompt_len, last_logits, history))
      for i, pair in zip(free, pairs):
        held[i], at[i] = pair, 0
    live = [i for i in range(n) if held[i] is not None]
    if not live:
      break
    fewer = n if pending else _drain_slots(len(live), num_slots, multiple)
    if fewer < n:
      order = live + [i for i in range(n) if held[i] is None][
          :fewer - len(live)]
      state = place(_take(state, np.asarray(order, np.int32)))
      held, at, n = [held[i] for i in order], at[order], fewer
      live = list(range(len(live)))
    chunk_sampler = dataclasses.replace(sampler, draft=draw.draft_count(
        sampler.draft, sampler.draft_rows, n))  # room for D + 1 a step:
    want = _bucket(int(at[live].max()) + CHUNK * (chunk_sampler.draft + 1),
                   steps)
    if pad + want != state['cache'][0][0].shape[3]:
      state = place(_resize(state, pad + want))
    state, out, ran = _chunk(cfg, chunk_sampler, pad, params, state,
                             prefix_kv, stop_next, stop_hit)
    state = place(state)
    row_steps += n * CHUNK
    buckets.append(want)
    out, ran, step, done, logprob = jax.device_get(
        (out, ran, state['step'], state['done'], state['logprob']))
    live_steps += int(ran.sum())
    ended = set()  # questions with a path finished in this chunk
    for i in live:
      q, s = held[i]
      tokens[q, s, at[i]:step[i]] = out[i, :step[i] - at[i]]
      at[i] = step[i]
      if done[i]:
        lengths[q, s], logprobs[q, s] = step[i], logprob[i]
        held[i], finished[q, s] = None, True
        ended.add(q)
    for q in ended:
      while (checked[q] + every < drawn[q]
             and finished[q, :checked[q] + every].all()):
        k = checked[q] + every
        if not decided(q, [tokens[q, j, :lengths[q, j]] for j in range(k)]):
          checked[q] = k
          continue
        drawn[q] = k  # samples k.. of q: never started, or abandoned
        pending = collections.deque(p for p in pending
                                    if p[0] != q or p[1] < k)
        for i, pair in enumerate(held):
          if pair is not None and pair[0] == q and pair[1] >= k:
            held[i] = None
        tokens[q, k:], lengths[q, k:], logprobs[q, k:] = 0, 0, 0.0
  return Paths(tokens=tokens, lengths=lengths, logprobs=logprobs,
               row_steps=row_steps, live_steps=live_steps,
               gen_lengths=tuple(buckets), drawn=drawn)
