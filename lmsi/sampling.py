"""Sampled and greedy decoding with a KV cache (LMSI stage 3 kernel).

`generate` maps B prompts to S sampled continuations each. The prompts are
prefilled ONCE ([B, P], not [B*S, P]); the S samples of a prompt attend to
that one cache plus their own cache of generated tokens (see
`lmsi.decoder.Decoder.decode`). Randomness is keyed per (seed, question id,
sample index, step), so outputs do not depend on batching, sharding, host
count or restarts. Temperature 0 is greedy decoding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from lmsi import batching
from lmsi import decoder as decoder_lib
from lmsi import layers
from lmsi import sharding
from lmsi import vocab_base


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
  """How paths are drawn. Defaults follow the paper (§3, App. A)."""

  num_samples: int = 32
  temperature: float = 0.7
  top_k: int = 40  # [open] self-consistency used top-k 40 with PaLM.
  top_p: float = 1.0
  max_decode_steps: int = 256
  stop_strings: tuple[str, ...] = ('\n\n',)  # [open] plus EOS.
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Generation:
  """Output of `generate` for B prompts and S samples (numpy, on host)."""

  tokens: np.ndarray  # int32 [B, S, T], 0 after the end.
  lengths: np.ndarray  # int32 [B, S] generated tokens incl. EOS/stop.
  logprobs: np.ndarray  # float32 [B, S] model log-prob of the tokens.
  texts: list[list[str]]  # [B][S] decoded, cut before any stop string.
  prefill_rows: int  # prompts run through the prefill (B, never B*S).


def question_key(seed: int, question_id: str) -> np.ndarray:
  """The PRNG key of one question: fold_in(PRNGKey(seed), crc32(id))."""
  return np.asarray(jax.random.fold_in(
      jax.random.PRNGKey(seed), zlib.crc32(question_id.encode('utf-8'))))


def _choose(logits, keys, temperature, top_k, top_p):
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


@functools.partial(jax.jit, static_argnums=(0,))
def _prefill(cfg, params, tokens, valid, prefix_kv):
  return decoder_lib.Decoder(cfg).apply(
      {'params': params}, tokens, valid, prefix_kv,
      method=decoder_lib.Decoder.prefill)


@dataclasses.dataclass(frozen=True)
class Prefix:
  """A token prefix every prompt starts with, and its KV cache (computed once).

  Build it with `prefix_for`; pass it to `generate` for any number of batches
  (e.g. the few-shot exemplar block of a task, identical for every question).
  """

  tokens: tuple[int, ...]
  kv: Any  # per layer (k, v), each [E, Hkv, Dh]


def prefix_for(cfg: decoder_lib.DecoderConfig, params: Any,
               tokens: Sequence[int], mesh: Mesh | None = None) -> Prefix:
  """Prefills `tokens` once (batch 1) and keeps their KV cache."""
  arr = np.asarray([list(tokens)], np.int32)
  with _mesh_context(mesh):
    _, kv = _prefill(cfg, params, arr, np.ones_like(arr, bool), None)
  kv = jax.tree_util.tree_map(lambda x: x[0], kv)
  return Prefix(tuple(int(t) for t in tokens), kv)


def common_prefix(encoded: Sequence[Sequence[int]]) -> list[int]:
  """The longest token prefix of all `encoded`, leaving each >= 1 token."""
  if not encoded:
    return []
  first = encoded[0]
  n = min(len(e) for e in encoded) - 1
  for e in encoded[1:]:
    k = 0
    while k < n and e[k] == first[k]:
      k += 1
    n = k
  return list(first[:max(n, 0)])


def _mesh_context(mesh: Mesh | None):
  if mesh is None:
    return contextlib.nullcontext()
  stack = contextlib.ExitStack()
  stack.enter_context(mesh)
  stack.enter_context(nn.logical_axis_rules(
      sharding.logical_axis_rules(for_sampling=True)))
  return stack


def stop_tables(token_bytes: Sequence[bytes], stop_strings: Sequence[str],
                vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-token automata that find stop strings across token boundaries.

  For each stop string (KMP over bytes, state = length of the matched
  prefix), `next[i, q, t]` is the state after emitting token t in state q and
  `hit[i, q, t]` whether that token completes stop string i. Works for any
  tokenizer: BPE may emit "\\n\\n" as one token or two.

  Returns:
    (int32 next, bool hit), each [num_stops, max_len, vocab_size].
  """
  stops = [s.encode('utf-8') for s in stop_strings]
  longest = max([len(s) for s in stops] + [1])
  nxt = np.zeros((len(stops), longest, vocab_size), np.int32)
  hit = np.zeros((len(stops), longest, vocab_size), bool)
  for i, stop in enumerate(stops):
    fail = [0] * (len(stop) + 1)  # KMP failure function
    for j in range(1, len(stop)):
      k = fail[j]
      while k and stop[j] != stop[k]:
        k = fail[k]
      fail[j + 1] = k + 1 if stop[j] == stop[k] else 0
    def step(q: int, byte: int) -> int:
      while q and stop[q] != byte:
        q = fail[q]
      return q + 1 if stop[q] == byte else 0
    for t in range(vocab_size):
      piece = token_bytes[t] if t < len(token_bytes) else b''
      for q0 in range(len(stop)):
        q = q0
        for byte in piece:
          q = step(q, byte)
          if q == len(stop):
            hit[i, q0, t] = True
            break
        nxt[i, q0, t] = 0 if hit[i, q0, t] else q
  return nxt, hit


def _stop_tables_for(vocab, stop_strings: tuple[str, ...], vocab_size: int):
  cache = vocab.__dict__.setdefault('_stop_tables', {})
  key = (stop_strings, vocab_size)
  if key not in cache:
    cache[key] = stop_tables(vocab.token_bytes(), stop_strings, vocab_size)
  return cache[key]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _decode(cfg, num_samples, max_steps, temperature, top_k, top_p, eos_id,
            params, last_logits, prompt_kv, prompt_valid, keys, stop_next,
            stop_hit, prefix_kv):
  """The sampling loop. keys: [B, S, 2] per-sample keys. See `generate`."""
  model = decoder_lib.Decoder(cfg)
  batch = last_logits.shape[0]
  gen_kv = tuple(layers.empty_gen_cache(cfg, batch, num_samples,
                                             max_steps)
                 for _ in range(cfg.num_layers))
  start = jnp.sum(prompt_valid, axis=-1)[:, None]  # [B, 1] first gen position
  if prefix_kv is not None:
    start = start + prefix_kv[0][0].shape[0]
  # [B, V] -> [B, S, V]: every sample starts from the one prefill.
  logits = jnp.broadcast_to(last_logits[:, None], (batch, num_samples,
                                                   last_logits.shape[-1]))
  num_stops = stop_next.shape[0]
  state = dict(
      step=jnp.int32(0),
      tokens=jnp.zeros((batch, num_samples, max_steps), jnp.int32),
      logits=logits,
      gen_kv=gen_kv,
      done=jnp.zeros((batch, num_samples), bool),
      lengths=jnp.zeros((batch, num_samples), jnp.int32),
      logprobs=jnp.zeros((batch, num_samples), jnp.float32),
      stop_state=jnp.zeros((batch, num_samples, num_stops), jnp.int32),
  )

  def cond(s):
    return (s['step'] < max_steps) & ~jnp.all(s['done'])

  def body(s):
    step = s['step']
    flat_logits = s['logits'].reshape(batch * num_samples, -1)  # [B*S, V]
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(
        keys.reshape(batch * num_samples, 2))
    token = _choose(flat_logits, step_keys, temperature, top_k, top_p)
    token = token.reshape(batch, num_samples).astype(jnp.int32)  # [B, S]
    token = jnp.where(s['done'], 0, token)
    logp = jax.nn.log_softmax(s['logits'], axis=-1)
    token_logp = jnp.take_along_axis(logp, token[..., None], -1)[..., 0]
    live = ~s['done']
    which = jnp.arange(num_stops)
    stop_state = stop_next[which, s['stop_state'], token[..., None]]
    finished = (token == eos_id) | jnp.any(
        stop_hit[which, s['stop_state'], token[..., None]], axis=-1)
    next_logits, gen_kv = model.apply(
        {'params': params}, token, start + step, prompt_kv, prompt_valid,
        s['gen_kv'], step, prefix_kv, method=decoder_lib.Decoder.decode)
    return dict(
        step=step + 1,
        tokens=s['tokens'].at[:, :, step].set(token),
        logits=next_logits,
        gen_kv=gen_kv,
        done=s['done'] | finished,
        lengths=s['lengths'] + live,
        logprobs=s['logprobs'] + jnp.where(live, token_logp, 0.0),
        stop_state=stop_state,
    )

  s = jax.lax.while_loop(cond, body, state)
  return s['tokens'], s['lengths'], s['logprobs']


def _cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
  cut = len(text)
  for stop in stop_strings:
    i = text.find(stop)
    if i != -1:
      cut = min(cut, i)
  return text[:cut]


def generate(
    cfg: decoder_lib.DecoderConfig,
    params: Any,
    vocab: vocab_base.Vocabulary,
    prompts: Sequence[str],
    question_ids: Sequence[str],
    config: SamplingConfig,
    *,
    prefix: Prefix | None = None,
    mesh: Mesh | None = None,
    first_sample: int = 0,
    pad_to: int = 0,
) -> Generation:
  """Samples `config.num_samples` continuations for each prompt.

  Args:
    cfg: the decoder's config.
    params: its parameters (placed with `place_params` when `mesh` is set).
    vocab: tokenizer.
    prompts: B prompt strings.
    question_ids: B ids; with the seed and sample index they key randomness.
    config: sampling settings; temperature 0 means greedy.
    prefix: a `Prefix` whose tokens every encoded prompt starts with; its
      cache is reused instead of prefilling those tokens again.
    mesh: a ('data', 'model') mesh; prompts are sharded over 'data' (the
      batch is padded to a multiple of its size), the KV caches by the
      sampling column of the logical-axis table.
    first_sample: index of the first sample (samples first_sample ..
      first_sample + S - 1 are drawn, keyed by those indices).
    pad_to: pad prompts (after the prefix) to at least this many tokens.
      Giving every batch of a run the same padded length keeps the float
      arithmetic, and so the samples, independent of which questions share
      a batch, a shard or a host.

  Returns:
    A `Generation` (texts cut before the first stop string).
  """
  if len(prompts) != len(question_ids):
    raise ValueError(f'{len(prompts)} prompts but {len(question_ids)} ids')
  encoded = [vocab.encode(p) for p in prompts]
  if prefix is not None:
    n = len(prefix.tokens)
    for i, e in enumerate(encoded):
      if len(e) <= n or tuple(e[:n]) != prefix.tokens:
        raise ValueError(f'prompt {i} ({question_ids[i]!r}) does not extend '
                         f'the shared {n}-token prefix')
    encoded = [e[n:] for e in encoded]
  ids = list(question_ids)
  real = len(encoded)
  data = 1 if mesh is None else mesh.shape[sharding.DATA]
  while len(encoded) % data:  # pad rows keep the compiled shape shardable
    encoded.append(encoded[0])
    ids.append(f'__pad{len(ids)}')
  tokens, valid = batching.pad_batch(
      encoded, max(pad_to, batching.bucket(max(len(e) for e in encoded))),
      vocab.pad_id)
  # [B] question keys -> [B, S] sample keys.
  qkeys = np.stack([question_key(config.seed, q) for q in ids])
  keys = jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(
      first_sample + jnp.arange(config.num_samples)))(qkeys)
  stop_next, stop_hit = _stop_tables_for(
      vocab, tuple(config.stop_strings), cfg.vocab_size)
  prefix_kv = None if prefix is None else prefix.kv
  if mesh is not None:
    tokens, valid, keys = (jax.device_put(x, sharding.batch_sharding(mesh, x.ndim))
                           for x in (tokens, valid, keys))
  with _mesh_context(mesh):
    last_logits, prompt_kv = _prefill(cfg, params, tokens, valid, prefix_kv)
    out_tokens, lengths, logprobs = _decode(
        cfg, config.num_samples, config.max_decode_steps,
        float(config.temperature), int(config.top_k), float(config.top_p),
        vocab.eos_id, params, last_logits, prompt_kv, valid, keys, stop_next,
        stop_hit, prefix_kv)
  out_tokens, lengths, logprobs = (
      np.asarray(x)[:real] for x in jax.device_get(
          (out_tokens, lengths, logprobs)))
  texts = [[_cut_at_stop(vocab.decode(row[:n]), config.stop_strings)
            for row, n in zip(rows, ns)]
           for rows, ns in zip(out_tokens, lengths)]
  return Generation(tokens=out_tokens, lengths=lengths, logprobs=logprobs,
                    texts=texts, prefill_rows=tokens.shape[0])


def place_params(cfg: decoder_lib.DecoderConfig, params: Any,
                 mesh: Mesh) -> Any:
  """Puts params on `mesh` by the sampling column of the axis table."""
  specs = decoder_lib.logical_param_specs(cfg)
  return jax.device_put(params, sharding.shardings_for(
      specs, mesh, sharding.logical_axis_rules(for_sampling=True),
      shapes=params))


def greedy_reference(cfg: decoder_lib.DecoderConfig, params: Any,
                     prompt: Sequence[int], steps: int) -> list[int]:
  """Greedy decoding by full recomputation, no cache (for tests)."""
  model = decoder_lib.Decoder(cfg)
  apply = jax.jit(lambda p, t, v: model.apply({'params': p}, t, v))
  seq = list(prompt)
  out = []
  for _ in range(steps):
    tokens, valid = batching.pad_batch([seq], len(prompt) + steps)
    logits = apply(params, tokens, valid)
    nxt = int(jnp.argmax(logits[0, len(seq) - 1]))
    out.append(nxt)
    seq.append(nxt)
  return out
