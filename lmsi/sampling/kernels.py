"""The sampler's kernels: jitted functions over a typed slot state.

`prefill` runs each question's prompt once (m samples share it);
`init_state` makes N free slots; `refill` starts paths in free slots (their
prompt caches copied from the prefill); `decode_chunk` runs CHUNK steps of
every slot; `resize` fits the generated-cache bucket; `take` keeps some
slots (the drain). `lmsi.sampling.scheduler` drives them from the host;
`lmsi.capacity.aot` and bench/ compile and time them.

No computation mixes slots, masked keys add exact zeros, and the token at
position t of a path is drawn with fold_in(its key, t): tokens do not depend
on the slot count, on which slot a path lands in, or on which paths share a
chunk; drafts depend only on the path's own history.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from lmsi.model import decoder as decoder_lib
from lmsi.model import layers
from lmsi.model import sharding
from lmsi.model.sharding import CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH, KV
from lmsi.sampling import draw

CHUNK = 4  # steps per jit call: a finished path idles < CHUNK steps.


@dataclasses.dataclass(frozen=True)
class Sampler:
  """The static settings of the decode loop (part of the jit key)."""

  temperature: float
  top_k: int
  top_p: float
  eos_ids: tuple[int, ...]  # a path ends at any of them (or none: ())
  max_steps: int
  draft: int = 0  # most tokens drafted a step by prompt lookup (0: none)
  draft_rows: int = 32  # rows a step may reach by drafting (N (D + 1))


@flax.struct.dataclass
class SlotState:
  """The decode loop's state: one row per slot, N slots.

  A slot holds one (question, sample) path: its prompt's KV cache followed
  by the generated part, the logits of its next token, its key and position.
  A free slot has `done` set. Shapes (L: prompt pad + generated-cache
  bucket, V: vocabulary, K: stop strings' states, H: history width):
  """

  # per layer (k [N, Hkv, Dh, L], v [N, Hkv, L, Dh]): `layers.Attention`'s
  # slot cache layout.
  cache: tuple[tuple[jax.Array, jax.Array], ...]
  logits: jax.Array  # float32 [N, V]: the next token's logits
  keys: jax.Array  # uint32 [N, 2]: the path's key (question, sample)
  step: jax.Array  # int32 [N]: position within the path (tokens made)
  prompt_len: jax.Array  # int32 [N]: valid tokens of the slot's prompt
  done: jax.Array  # bool [N]: the slot is free (its path ended)
  logprob: jax.Array  # float32 [N]: the path's log-probability so far
  stop_state: jax.Array  # int32 [N, K]: each stop string's matched prefix
  hist: jax.Array  # int32 [N, H]: prompt then path ids (drafts' lookup)

  @property
  def num_slots(self) -> int:
    return self.step.shape[0]

  @property
  def length(self) -> int:
    """L: the cache's prompt pad + generated-cache bucket."""
    return self.cache[0][0].shape[3]


@functools.partial(jax.jit, static_argnums=(0,))
def prefill(cfg, params, tokens, valid, prefix_kv):
  """Prompt prefill: (last logits float32 [B, V], per-layer (k, v)
  [B, P, Hkv, Dh]) of `tokens` int32 [B, P] (valid: bool [B, P]) after the
  shared prefix's kv (or None). One row per question, never per sample."""
  return decoder_lib.Decoder(cfg).apply(
      {'params': params}, tokens, valid, prefix_kv,
      method=decoder_lib.Decoder.prefill)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def init_state(cfg, slots: int, length: int, num_stops: int,
               history: int = 0) -> SlotState:
  """Slot state with every slot free (done), made by one compiled call
  rather than 2 x num_layers + 8 dispatches. `history`: the width of each
  slot's token history (prompt, then path) that drafts are looked up in."""
  return SlotState(
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
def decode_chunk(cfg, sampler, prompt_pad, params, state, prefix_kv,
                 stop_next, stop_hit):
  """CHUNK decoding steps of every slot. Returns (state, int32 [N, CHUNK
  (D + 1)] tokens made, each slot's from its first column on, int32 [N]
  steps each slot ran with a live path)."""
  model = decoder_lib.Decoder(cfg)
  slots, length = state.num_slots, state.length
  # prefix_kv is in `layers.decode_prefix`'s layout: k [Hkv, Dh, E].
  offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[2]
  which = jnp.arange(stop_next.shape[0])
  rows = jnp.arange(slots)
  idx = jnp.arange(length)
  ahead = jnp.arange(sampler.draft + 1)  # the new token, then the drafts
  width = CHUNK * (sampler.draft + 1)
  first = state.step  # out[:, j] is the token at position first + j
  # Positions stay below offset + length: cos/sin once, outside the loop.
  table = decoder_lib.rotary_pair(jnp.arange(offset + length), cfg)

  def pick(logits, keys, t):
    keys = jax.vmap(jax.random.fold_in)(keys, t)
    return draw.choose(logits, keys, sampler.temperature, sampler.top_k,
                       sampler.top_p).astype(jnp.int32)

  def ends(stop_state, token, t):
    """(the path ends with `token` at position t, the next stop state)."""
    hit = stop_hit[which, stop_state, token[:, None]]  # [N, stops]
    eos = functools.reduce(jnp.logical_or,
                           [token == e for e in sampler.eos_ids],
                           jnp.zeros(token.shape, bool))
    return (eos | jnp.any(hit, axis=-1)
            | (t + 1 >= sampler.max_steps),
            stop_next[which, stop_state, token[:, None]])

  def body(_, carry):
    s, out, ran = carry
    t, live = s.step, ~s.done
    token = jnp.where(live, pick(s.logits, s.keys, t), 0)
    logprob = s.logprob + jnp.where(
        live, draw.logprob(s.logits, token), 0.0)
    finished, stop_state = ends(s.stop_state, token, t)
    out = out.at[rows, t - first].set(token, mode='drop')
    start = offset + s.prompt_len  # the path's first index in hist
    hist = s.hist
    fed = token[:, None]
    if sampler.draft:
      hist = hist.at[rows, start + t].set(token, mode='drop')
      drafts = draw.lookup(hist, start + t, sampler.draft)
      fed = jnp.concatenate([fed, drafts], axis=1)
    write = jnp.minimum(prompt_pad + t[:, None] + ahead, length - 1)
    # [N, D + 1, L]: the slot's prompt tokens, then its path up to the token.
    valid = ((idx < s.prompt_len[:, None, None])
             | ((idx >= prompt_pad) & (idx <= write[..., None])))
    # Entry j holds the prompt's token j, or the path's token j - prompt_pad.
    key_positions = offset + jnp.where(
        idx < s.prompt_len[:, None], idx,
        s.prompt_len[:, None] + idx - prompt_pad)
    logits, cache = model.apply(
        {'params': params}, fed, offset + s.prompt_len[:, None] + t[:, None]
        + ahead, s.cache, write, valid, prefix_kv, table, key_positions,
        method=decoder_lib.Decoder.decode)
    count = live.astype(jnp.int32)  # tokens made this step
    going = live & ~finished
    after = logits[:, 0]  # the logits after the last token made
    for i in range(1, sampler.draft + 1):
      # Keep draft i only if it is the token drawn at position t + i.
      guess = fed[:, i]
      ok = going & (pick(logits[:, i - 1], s.keys, t + i) == guess)
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
    s = s.replace(cache=cache, logits=after, step=t + count,
             done=s.done | finished, logprob=logprob,
             stop_state=stop_state, hist=hist)
    return s, out, ran + live

  out = jnp.zeros((slots, width), jnp.int32)
  return jax.lax.fori_loop(0, CHUNK, body,
                           (state, out, jnp.zeros((slots,), jnp.int32)))


@functools.partial(jax.jit, donate_argnums=(0,))
def refill(state, slot, question, keys, prompt_kv, prompt_len, last_logits,
           history):
  """Starts path (question[i], keys[i]) in slot[i]; slot == N: no-op row."""
  pad = prompt_kv[0][0].shape[1]
  put = lambda x, value: x.at[slot].set(value, mode='drop')
  cache = []
  for (k, v), (pk, pv) in zip(state.cache, prompt_kv):
    # [K, P, Hkv, Dh] -> k [K, Hkv, Dh, P], v [K, Hkv, P, Dh]
    k = k.at[slot, :, :, :pad].set(
        jnp.transpose(pk[question], (0, 2, 3, 1)), mode='drop')
    v = v.at[slot, :, :pad, :].set(jnp.swapaxes(pv[question], 1, 2),
                                   mode='drop')
    cache.append((k, v))
  zero = jnp.zeros_like(slot)
  return SlotState(
      cache=tuple(cache), logits=put(state.logits, last_logits[question]),
      keys=put(state.keys, keys), step=put(state.step, zero),
      prompt_len=put(state.prompt_len, prompt_len[question]),
      done=put(state.done, False),
      logprob=put(state.logprob, zero.astype(jnp.float32)),
      stop_state=put(state.stop_state, 0),
      hist=put(state.hist, history[question]))


@functools.partial(jax.jit, static_argnums=(1,))
def resize(state, length):
  """The cache cut or zero-padded to L = `length` (live entries kept)."""
  def fit(x, axis):  # lax.pad cuts where the padding is negative
    return jax.lax.pad(x, jnp.zeros((), x.dtype), [
        (0, length - x.shape[axis] if a == axis else 0, 0)
        for a in range(x.ndim)])
  return state.replace(cache=tuple((fit(k, 3), fit(v, 2))
                                 for k, v in state.cache))


@jax.jit
def take(state, index):
  """Keeps the slots `index` (int [N']), in that order."""
  return jax.tree_util.tree_map(lambda x: x[index], state)


def state_specs(state: SlotState) -> SlotState:
  """Logical specs of a slot state: slots over data, cache heads over model."""
  cache = tuple((PartitionSpec(CACHE_BATCH, CACHE_HEADS, KV, CACHE_LENGTH),
                 PartitionSpec(CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH, KV))
                for _ in state.cache)
  rows = {f.name: PartitionSpec(CACHE_BATCH)
          for f in dataclasses.fields(SlotState) if f.name != 'cache'}
  return SlotState(cache=cache, **rows)


def place(mesh: Mesh | None, state: SlotState) -> SlotState:
  """Slots over the data axis, cache heads over 'model' (the axis table)."""
  if mesh is None:
    return state
  return jax.device_put(state, sharding.shardings_for(
      state_specs(state), mesh, sharding.logical_axis_rules(for_sampling=True),
      shapes=state))
