"""Sampled and greedy decoding with a KV cache (LMSI stage 3 kernel).

`generate` maps B prompts to S sampled continuations each. The prompts are
prefilled ONCE ([B, P], not [B*S, P]); the S samples of a prompt attend to
that one cache plus their own cache of generated tokens (see
`lmsi.decoder.Decoder.decode`). Randomness is keyed per (seed, question id,
sample index, step), so outputs do not depend on batching, sharding, host
count or restarts. Temperature 0 is greedy decoding.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmsi import decoder as decoder_lib
from lmsi import vocab as vocab_lib


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
  """Picks one token per row. logits [N, V] float32; keys [N, 2]."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1)
  logits = logits / temperature
  if 0 < top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better
    cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf),
                     axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  gumbel = jax.vmap(
      lambda k: jax.random.gumbel(k, (logits.shape[-1],), jnp.float32))(keys)
  return jnp.argmax(logits + gumbel, axis=-1)


@functools.partial(jax.jit, static_argnums=(0,))
def _prefill(cfg, params, tokens, valid):
  return decoder_lib.Decoder(cfg).apply(
      {'params': params}, tokens, valid, method=decoder_lib.Decoder.prefill)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
def _decode(cfg, num_samples, max_steps, temperature, top_k, top_p, stops,
            eos_id, params, last_logits, prompt_kv, prompt_valid, keys):
  """The sampling loop. keys: [B, S, 2] per-sample keys. See `generate`."""
  model = decoder_lib.Decoder(cfg)
  batch = last_logits.shape[0]
  dtype = jnp.dtype(cfg.dtype)
  cache_shape = (batch, num_samples, max_steps, cfg.num_kv_heads,
                 cfg.head_dim)
  gen_kv = tuple((jnp.zeros(cache_shape, dtype), jnp.zeros(cache_shape, dtype))
                 for _ in range(cfg.num_layers))
  start = jnp.sum(prompt_valid, axis=-1)[:, None]  # [B, 1] first gen position
  # [B, V] -> [B, S, V]: every sample starts from the one prefill.
  logits = jnp.broadcast_to(last_logits[:, None], (batch, num_samples,
                                                   last_logits.shape[-1]))
  window = max([len(s) for s in stops] + [1])
  state = dict(
      step=jnp.int32(0),
      tokens=jnp.zeros((batch, num_samples, max_steps), jnp.int32),
      logits=logits,
      gen_kv=gen_kv,
      done=jnp.zeros((batch, num_samples), bool),
      lengths=jnp.zeros((batch, num_samples), jnp.int32),
      logprobs=jnp.zeros((batch, num_samples), jnp.float32),
      recent=jnp.zeros((batch, num_samples, window), jnp.int32),
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
    recent = jnp.concatenate([s['recent'][..., 1:], token[..., None]], -1)
    finished = token == eos_id
    for stop in stops:
      finished |= jnp.all(recent[..., window - len(stop):] == jnp.asarray(
          stop, jnp.int32), axis=-1)
    next_logits, gen_kv = model.apply(
        {'params': params}, token, start + step, prompt_kv, prompt_valid,
        s['gen_kv'], step, method=decoder_lib.Decoder.decode)
    return dict(
        step=step + 1,
        tokens=s['tokens'].at[:, :, step].set(token),
        logits=next_logits,
        gen_kv=gen_kv,
        done=s['done'] | finished,
        lengths=s['lengths'] + live,
        logprobs=s['logprobs'] + jnp.where(live, token_logp, 0.0),
        recent=recent,
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
    vocab: vocab_lib.ByteVocab,
    prompts: Sequence[str],
    question_ids: Sequence[str],
    config: SamplingConfig,
) -> Generation:
  """Samples `config.num_samples` continuations for each prompt.

  Args:
    cfg: the decoder's config.
    params: its parameters.
    vocab: tokenizer.
    prompts: B prompt strings.
    question_ids: B ids; with the seed and sample index they key randomness.
    config: sampling settings; temperature 0 means greedy.

  Returns:
    A `Generation` (texts cut before the first stop string).
  """
  if len(prompts) != len(question_ids):
    raise ValueError(f'{len(prompts)} prompts but {len(question_ids)} ids')
  encoded = [vocab.encode(p) for p in prompts]
  tokens, valid = vocab_lib.pad_batch(
      encoded, vocab_lib.bucket(max(len(e) for e in encoded)), vocab.pad_id)
  last_logits, prompt_kv = _prefill(cfg, params, tokens, valid)
  # [B] question keys -> [B, S] sample keys.
  qkeys = np.stack([question_key(config.seed, q) for q in question_ids])
  keys = jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(
      jnp.arange(config.num_samples)))(qkeys)
  stops = tuple(tuple(vocab.encode(s)) for s in config.stop_strings)
  out_tokens, lengths, logprobs = _decode(
      cfg, config.num_samples, config.max_decode_steps,
      float(config.temperature), int(config.top_k), float(config.top_p),
      stops, vocab.eos_id, params, last_logits, prompt_kv, valid, keys)
  out_tokens, lengths, logprobs = jax.device_get(
      (out_tokens, lengths, logprobs))
  texts = [[_cut_at_stop(vocab.decode(row[:n]), config.stop_strings)
            for row, n in zip(rows, ns)]
           for rows, ns in zip(out_tokens, lengths)]
  return Generation(tokens=np.asarray(out_tokens), lengths=np.asarray(lengths),
                    logprobs=np.asarray(logprobs), texts=texts,
                    prefill_rows=tokens.shape[0])


def greedy_reference(cfg: decoder_lib.DecoderConfig, params: Any,
                     prompt: Sequence[int], steps: int) -> list[int]:
  """Greedy decoding by full recomputation, no cache (for tests)."""
  model = decoder_lib.Decoder(cfg)
  apply = jax.jit(lambda p, t, v: model.apply({'params': p}, t, v))
  seq = list(prompt)
  out = []
  for _ in range(steps):
    tokens, valid = vocab_lib.pad_batch([seq], len(prompt) + steps)
    logits = apply(params, tokens, valid)
    nxt = int(jnp.argmax(logits[0, len(seq) - 1]))
    out.append(nxt)
    seq.append(nxt)
  return out
