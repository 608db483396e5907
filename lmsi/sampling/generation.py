"""Sampled and greedy decoding with a KV cache (LMSI stage 3 kernel).

`generate` maps B prompts to S sampled continuations each. The prompts are
prefilled ONCE ([B, P], not [B*S, P]); the B*S paths are then decoded in a
fixed number of slots with continuous batching (`lmsi.sampling.scheduler`).
Randomness is keyed per (seed, question id, sample index, step), so outputs do
not depend on batching, slots, sharding, host count or restarts. Temperature 0
is greedy decoding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from lmsi.sampling import batching
from lmsi.model import decoder as decoder_lib
from lmsi.model import sharding
from lmsi.sampling import kernels
from lmsi.sampling import scheduler
from lmsi.sampling import stops
from lmsi.vocab import base as vocab_base


# Most slots by default. On this CPU a 64-row step ran its dense matmuls at
# 198 GFLOP/s against 127 at 32 rows (`bench/decode_profile.py`).
DEFAULT_SLOTS = 64


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
  # Paths decoded at once (`lmsi.sampling.scheduler`); 0: min(B*S/2,
  # DEFAULT_SLOTS). Tokens do not depend on it.
  num_slots: int = 0
  # Tokens drafted a step by prompt lookup, kept only where they are the
  # tokens drawn anyway (`lmsi.sampling.scheduler`): speed only, tokens
  # unchanged. At most `draft_tokens`, and slots x (drafts + 1) <= `draft_rows`:
  # on a CPU, drafting pays only while few slots are live (docs/sampling.md).
  draft_tokens: int = 3
  draft_rows: int = 32


@dataclasses.dataclass(frozen=True)
class Generation:
  """Output of `generate` for B prompts and S samples (numpy, on host)."""

  tokens: np.ndarray  # int32 [B, S, T], 0 after the end.
  lengths: np.ndarray  # int32 [B, S] generated tokens incl. EOS/stop.
  logprobs: np.ndarray  # float32 [B, S] model log-prob of the tokens.
  texts: list[list[str]]  # [B][S] decoded, cut before any stop string
  # (with early stopping, [B][drawn]: the samples kept).
  prefill_rows: int  # prompts run through the prefill (B, never B*S).
  row_steps: int = 0  # slot-steps decoded, idle ones included.
  live_steps: int = 0  # slot-steps of live paths (< tokens with drafts).


def question_key(seed: int, question_id: str) -> np.ndarray:
  """The PRNG key of one question: fold_in(PRNGKey(seed), crc32(id))."""
  return np.asarray(jax.random.fold_in(
      jax.random.PRNGKey(seed), zlib.crc32(question_id.encode('utf-8'))))


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
    _, kv = kernels.prefill(cfg, params, arr, np.ones_like(arr, bool), None)
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
    decided: Callable[[int, list[str]], bool] | None = None,
    check_every: int = 0,
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
    decided, check_every: the early-stopped vote inside the decode loop
      (`scheduler.decode`): `decided(prompt index, texts of its first k
      samples)` for k = check_every, 2 check_every, ...; True keeps those k.

  Returns:
    A `Generation` (texts cut before the first stop string).
  """
  if len(prompts) != len(question_ids):
    raise ValueError(f'{len(prompts)} prompts but {len(question_ids)} ids')
  encoded = [vocab_base.prompt_ids(vocab, p) for p in prompts]
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
  keys = np.asarray(jax.vmap(lambda k: jax.vmap(
      lambda i: jax.random.fold_in(k, i))(
          first_sample + jnp.arange(config.num_samples)))(qkeys))
  prompt_len = valid.sum(-1).astype(np.int32)  # [B]
  # Each prompt's ids, the shared prefix's included: drafts' lookup table.
  shared = list(() if prefix is None else prefix.tokens)
  history = batching.pad_batch(
      [shared + list(e) for e in encoded[:real]],
      len(shared) + tokens.shape[1])[0] if config.draft_tokens else None
  stop_next, stop_hit = stops.tables_for(
      vocab, tuple(config.stop_strings), cfg.vocab_size)
  prefix_kv = None if prefix is None else prefix.kv
  if mesh is not None:
    tokens, valid = (jax.device_put(x, sharding.batch_sharding(mesh, x.ndim))
                     for x in (tokens, valid))
  sampler = kernels.Sampler(
      temperature=float(config.temperature), top_k=int(config.top_k),
      top_p=float(config.top_p), eos_ids=vocab_base.stop_ids(vocab),
      max_steps=config.max_decode_steps, draft=int(config.draft_tokens),
      draft_rows=int(config.draft_rows))
  paths = real * config.num_samples
  if config.num_slots:
    num_slots = min(config.num_slots, paths)
  else:  # ~2 paths per slot: refills then hide the spread of lengths.
    num_slots = min(max(-(-paths // 2), 8), paths, DEFAULT_SLOTS)
  num_slots = -(-num_slots // data) * data
  judged: dict[int, list[str]] = {}  # texts of finished paths, decoded once

  def judge(q: int, rows: list[np.ndarray]) -> bool:
    texts = judged.setdefault(q, [])  # rows extend the last call's rows
    texts.extend(stops.cut_at_stop(vocab.decode(r), config.stop_strings)
                 for r in rows[len(texts):])
    return decided(q, texts)

  with _mesh_context(mesh):
    last_logits, prompt_kv = kernels.prefill(cfg, params, tokens, valid,
                                             prefix_kv)
    # Only the real questions' paths are decoded: pad rows cost no steps.
    paths = scheduler.decode(
        cfg, params, last_logits=last_logits, prompt_kv=prompt_kv,
        prompt_len=prompt_len, keys=keys[:real], sampler=sampler,
        stop_next=stop_next, stop_hit=stop_hit, prefix_kv=prefix_kv,
        num_slots=num_slots, history=history, mesh=mesh,
        check_every=check_every,
        decided=None if decided is None else judge)
  texts = [[stops.cut_at_stop(vocab.decode(row[:n]), config.stop_strings)
            for row, n in zip(rows[:k], ns)]
           for rows, ns, k in zip(paths.tokens, paths.lengths, paths.drawn)]
  return Generation(tokens=paths.tokens, lengths=paths.lengths,
                    logprobs=paths.logprobs, texts=texts,
                    prefill_rows=tokens.shape[0], row_steps=paths.row_steps,
                    live_steps=paths.live_steps)


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
