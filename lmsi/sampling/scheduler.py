"""The host loop of continuous batching: paths decoded in N slots (stage 3).

`sampling.generate` prefills each question's prompt once; `decode` draws its
paths with the kernels of `lmsi.sampling.kernels`. Each of N slots holds one
(question, sample) path: a KV cache per layer of [question prompt | generated
tokens], the next token's logits and the path's position. Steps run `CHUNK` at a
time inside jit; between chunks the host gives every finished slot the next
pending path (its question's prompt cache copied from the prefill), so no slot
idles while paths wait.

Attention reads what is filled: the generated part of the cache is a bucket
just long enough for the longest live path (32, 64, 128, ...), not
`max_decode_steps`. When no path is pending the slots shrink as they empty
(a few smaller compiled shapes), so the drain runs few idle rows.

Drafted tokens (`lmsi.sampling.draw`): a step may also feed tokens guessed
from a slot's own history, kept only where they are the tokens drawn anyway.

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
from jax.sharding import Mesh

from lmsi.model import decoder as decoder_lib
from lmsi.model import layers
from lmsi.model import sharding
from lmsi.sampling import draw
from lmsi.sampling import kernels
from lmsi.sampling.kernels import CHUNK

MIN_BUCKET = 32  # shortest generated-cache bucket


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
           keys: np.ndarray, sampler: kernels.Sampler, stop_next: np.ndarray,
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
  place = functools.partial(kernels.place, mesh)
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
  state = place(kernels.init_state(cfg, n, pad + gen, stop_next.shape[0],
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
      state = place(kernels.refill(state, slot, question, new_keys,
                                   prompt_kv, prompt_len, last_logits,
                                   history))
      for i, pair in zip(free, pairs):
        held[i], at[i] = pair, 0
    live = [i for i in range(n) if held[i] is not None]
    if not live:
      break
    fewer = n if pending else _drain_slots(len(live), num_slots, multiple)
    if fewer < n:
      order = live + [i for i in range(n) if held[i] is None][
          :fewer - len(live)]
      state = place(kernels.take(state, np.asarray(order, np.int32)))
      held, at, n = [held[i] for i in order], at[order], fewer
      live = list(range(len(live)))
    chunk_sampler = dataclasses.replace(sampler, draft=draw.draft_count(
        sampler.draft, sampler.draft_rows, n))  # room for D + 1 a step:
    want = _bucket(int(at[live].max()) + CHUNK * (chunk_sampler.draft + 1),
                   steps)
    if pad + want != state.length:
      state = place(kernels.resize(state, pad + want))
    state, out, ran = kernels.decode_chunk(
        cfg, chunk_sampler, pad, params, state, prefix_kv, stop_next,
        stop_hit)
    state = place(state)
    row_steps += n * CHUNK
    buckets.append(want)
    out, ran, step, done, logprob = jax.device_get(
        (out, ran, state.step, state.done, state.logprob))
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
