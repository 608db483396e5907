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

No computation mixes slots, masked keys add exact zeros, and the token at
position t of sample s of question q is drawn with fold_in(key(q, s), t):
tokens do not depend on the slot count, on which slot a path lands in, or on
which paths share a chunk.
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


@dataclasses.dataclass(frozen=True)
class Paths:
  """What `decode` returns (numpy, on host)."""

  tokens: np.ndarray  # int32 [B, S, max_steps], 0 after the end.
  lengths: np.ndarray  # int32 [B, S] incl. the EOS/stop token.
  logprobs: np.ndarray  # float32 [B, S]
  row_steps: int  # slot-steps run, idle ones included (>= lengths.sum())
  gen_lengths: tuple[int, ...]  # the generated-cache bucket of each chunk
  drawn: np.ndarray  # int32 [B] samples kept per question (early stop)


def choose(logits, keys, temperature, top_k, top_p):
  """Picks one token per row. logits [N, V] float32; keys [N, 2].

  Top-k keeps the k best logits (`lax.top_k`, sorted), top-p then keeps the
  smallest head of those whose probability reaches p, and the Gumbel-max
  trick samples among the survivors: Gumbel noise is drawn for the k
  candidates only, not the whole vocabulary.
  """
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1)
  logits = logits / temperature
  vocab = logits.shape[-1]
  k = top_k if 0 < top_k < vocab else (vocab if top_p < 1.0 else 0)
  if k:
    cand, index = jax.lax.top_k(logits, k)  # [N, k], best first
  else:
    cand, index = logits, None
  if top_p < 1.0:
    probs = jax.nn.softmax(cand, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better
    cand = jnp.where(before < top_p, cand, -jnp.inf)
  gumbel = jax.vmap(
      lambda key: jax.random.gumbel(key, (cand.shape[-1],), jnp.float32))(keys)
  choice = jnp.argmax(cand + gumbel, axis=-1)
  if index is None:
    return choice
  return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _empty(cfg, slots: int, length: int, num_stops: int) -> dict:
  """Slot state with every slot free (done), made by one compiled call
  rather than 2 x num_layers + 7 dispatches."""
  return dict(
      cache=tuple(layers.empty_slot_cache(cfg, slots, length)
                  for _ in range(cfg.num_layers)),
      logits=jnp.zeros((slots, cfg.vocab_size), jnp.float32),
      keys=jnp.zeros((slots, 2), jnp.uint32),
      step=jnp.zeros((slots,), jnp.int32),  # position within the path
      prompt_len=jnp.zeros((slots,), jnp.int32),
      done=jnp.ones((slots,), bool),
      logprob=jnp.zeros((slots,), jnp.float32),
      stop_state=jnp.zeros((slots, num_stops), jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(4,))
def _chunk(cfg, sampler, prompt_pad, params, state, prefix_kv, stop_next,
           stop_hit):
  """CHUNK decoding steps of every slot. Returns (state, int32 [N, CHUNK])."""
  model = decoder_lib.Decoder(cfg)
  slots, length = state['cache'][0][0].shape[0], state['cache'][0][0].shape[3]
  # prefix_kv is in `layers.decode_prefix`'s layout: k [Hkv, Dh, E].
  offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[2]
  which = jnp.arange(stop_next.shape[0])
  idx = jnp.arange(length)
  # Positions stay below offset + length: cos/sin once, outside the loop.
  table = layers.rotary_angles(jnp.arange(offset + length), cfg.head_dim,
                               cfg.rope_theta, cfg.dtype)

  def body(c, carry):
    s, out = carry
    t, live = s['step'], ~s['done']
    keys = jax.vmap(jax.random.fold_in)(s['keys'], t)
    token = choose(s['logits'], keys, sampler.temperature, sampler.top_k,
                   sampler.top_p).astype(jnp.int32)
    token = jnp.where(live, token, 0)
    logp = jax.nn.log_softmax(s['logits'], axis=-1)
    token_logp = jnp.take_along_axis(logp, token[:, None], -1)[:, 0]
    hit = stop_hit[which, s['stop_state'], token[:, None]]  # [N, stops]
    finished = ((token == sampler.eos_id) | jnp.any(hit, axis=-1)
                | (t + 1 >= sampler.max_steps))
    write = jnp.minimum(prompt_pad + t, length - 1)
    # [N, L]: the slot's prompt tokens, then its path up to this token.
    valid = ((idx < s['prompt_len'][:, None])
             | ((idx >= prompt_pad) & (idx <= write[:, None])))
    logits, cache = model.apply(
        {'params': params}, token, offset + s['prompt_len'] + t, s['cache'],
        write, valid, prefix_kv, table, method=decoder_lib.Decoder.decode)
    s = dict(s, cache=cache, logits=logits, step=t + live,
             done=s['done'] | finished,
             logprob=s['logprob'] + jnp.where(live, token_logp, 0.0),
             stop_state=stop_next[which, s['stop_state'], token[:, None]])
    return s, out.at[:, c].set(token)

  out = jnp.zeros((slots, CHUNK), jnp.int32)
  return jax.lax.fori_loop(0, CHUNK, body, (state, out))


@functools.partial(jax.jit, donate_argnums=(0,))
def _refill(state, slot, question, keys, prompt_kv, prompt_len, last_logits):
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
      stop_state=put(state['stop_state'], 0))


@functools.partial(jax.jit, static_argnums=(1,))
def _resize(state, length):
  """The cache cut or zero-padded to L = `length` (live entries kept)."""
  def fit(x, axis):
    n = x.shape[axis]
    if length <= n:
      return jax.lax.slice_in_dim(x, 0, length, axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, length - n)
    return jnp.pad(x, pad)
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


# The shared prefix in the layout decode attention reads, once per `decode`.
_decode_prefix = jax.jit(layers.decode_prefix)


def _bucket(need: int, max_steps: int) -> int:
  size = MIN_BUCKET
  while size < need:
    size *= 2
  return min(size, max_steps)


def decode(cfg: decoder_lib.DecoderConfig, params: Any, *,
           last_logits: jax.Array, prompt_kv: Any, prompt_len: np.ndarray,
           keys: np.ndarray, sampler: Sampler, stop_next: np.ndarray,
           stop_hit: np.ndarray, prefix_kv: Any, num_slots: int,
           mesh: Mesh | None = None,
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
  state = place(_empty(cfg, n, pad + gen, stop_next.shape[0]))
  if prefix_kv is not None:
    prefix_kv = _decode_prefix(prefix_kv)
  row_steps, buckets = 0, []
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
                            prompt_len, last_logits))
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
    want = _bucket(int(at[live].max()) + CHUNK, steps)
    if pad + want != state['cache'][0][0].shape[3]:
      state = place(_resize(state, pad + want))
    state, out = _chunk(cfg, sampler, pad, params, state, prefix_kv,
                        stop_next, stop_hit)
    state = place(state)
    row_steps += n * CHUNK
    buckets.append(want)
    out, step, done, logprob = jax.device_get(
        (out, state['step'], state['done'], state['logprob']))
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
               row_steps=row_steps, gen_lengths=tuple(buckets), drawn=drawn)
