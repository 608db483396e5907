"""The llama.cpp engine of bench/sampling.py: m paths per prompt, one KV cache.

llama-cpp-python's low-level bindings (`llama_cpp`, llama.cpp's C API) run
the GGUF as it is stored: its Q4_1 weights through llama.cpp's own quantized
kernels (lmsi and transformers run the same weights dequantized to float32).
One context with a unified KV cache holds

  * sequence m: the exemplar block every prompt starts with, prefilled once;
  * per question, sequence 0: a copy of it (`llama_memory_seq_cp` shares the
    cells, it copies nothing) plus the question's remaining prompt tokens;
    then sequences 1..m-1 copy sequence 0 the same way.

Each step is one `llama_decode` of a batch holding the newest token of every
live path. Tokens are drawn by llama.cpp's sampler chain (top-k, then
temperature, then a seeded draw); a path stops after the token that
completes the stop string, or at EOS, or after `max_new_tokens`, and its
cells are freed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence


def sample(gguf: str, prompts: Sequence[Sequence[int]], *, num_samples: int,
           max_new_tokens: int, temperature: float, top_k: int,
           token_bytes: Sequence[bytes], stop: bytes, eos_id: int,
           prefix_len: int = 0, seed: int = 0,
           threads: int | None = None) -> dict:
  """Samples `num_samples` paths for each prompt (token ids).

  The first `prefix_len` ids of every prompt (the exemplar block) are
  prefilled once for all of them.

  Returns:
    {'rows': [question-major list of generated ids, each up to and
    including its stop], 'seconds': wall time of all questions,
    'prefill_seconds', 'decode_calls', 'version', 'tensor_type'}.
  """
  import llama_cpp  # pylint: disable=g-import-not-at-top
  m = num_samples
  threads = threads or os.cpu_count() or 1
  llama_cpp.llama_backend_init()
  mparams = llama_cpp.llama_model_default_params()
  model = llama_cpp.llama_model_load_from_file(gguf.encode(), mparams)
  if not model:
    raise RuntimeError(f'llama.cpp could not load {gguf}')
  longest = max(len(p) for p in prompts)
  cparams = llama_cpp.llama_context_default_params()
  need = longest + m * (max_new_tokens + 1) + 256
  cparams.n_ctx = -(-need // 256) * 256
  cparams.n_batch = max(512, longest)
  cparams.n_seq_max = m + 1
  cparams.n_threads = cparams.n_threads_batch = threads
  cparams.kv_unified = True  # the m paths share the prompt's cells
  ctx = llama_cpp.llama_init_from_model(model, cparams)
  if not ctx:
    raise RuntimeError('llama.cpp could not create a context')
  mem = llama_cpp.llama_get_memory(ctx)
  batch = llama_cpp.llama_batch_init(max(cparams.n_batch, m), 0, 1)
  chain = llama_cpp.llama_sampler_chain_init(
      llama_cpp.llama_sampler_chain_default_params())
  llama_cpp.llama_sampler_chain_add(chain,
                                    llama_cpp.llama_sampler_init_top_k(top_k))
  llama_cpp.llama_sampler_chain_add(
      chain, llama_cpp.llama_sampler_init_temp(temperature))
  llama_cpp.llama_sampler_chain_add(chain,
                                    llama_cpp.llama_sampler_init_dist(seed))

  def decode(entries):
    """entries: (token, position, sequence, wants logits) per batch row."""
    for i, (tok, pos, seq, logits) in enumerate(entries):
      batch.token[i] = tok
      batch.pos[i] = pos
      batch.n_seq_id[i] = 1
      batch.seq_id[i][0] = seq
      batch.logits[i] = 1 if logits else 0
    batch.n_tokens = len(entries)
    rc = llama_cpp.llama_decode(ctx, batch)
    if rc:
      raise RuntimeError(f'llama_decode returned {rc}')

  def prefill(ids, start, seq):
    for i in range(0, len(ids), cparams.n_batch):
      chunk = ids[i:i + cparams.n_batch]
      decode([(t, start + i + j, seq, i + j == len(ids) - 1)
              for j, t in enumerate(chunk)])

  block = list(prompts[0][:prefix_len])
  if any(list(p[:prefix_len]) != block or len(p) <= prefix_len
         for p in prompts):
    raise ValueError(f'not every prompt extends the {prefix_len}-token prefix')
  rows, calls = [], 0
  t0 = time.perf_counter()
  prefill_seconds = 0.0
  if block:
    prefill(block, 0, m)
  prefill_seconds += time.perf_counter() - t0
  for prompt in prompts:
    t1 = time.perf_counter()
    for s in range(m):
      llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
    if block:
      llama_cpp.llama_memory_seq_cp(mem, m, 0, -1, -1)
    prefill(list(prompt[len(block):]), len(block), 0)
    for s in range(1, m):
      llama_cpp.llama_memory_seq_cp(mem, 0, s, -1, -1)
    prefill_seconds += time.perf_counter() - t1
    out = [[] for _ in range(m)]
    text = [b''] * m
    live = list(range(m))
    idx = {s: -1 for s in live}  # batch row of each path's logits (-1: last)
    pos = len(prompt)
    while live:
      still = []
      for s in live:
        tok = llama_cpp.llama_sampler_sample(chain, ctx, idx[s])
        out[s].append(tok)
        if tok < len(token_bytes):
          text[s] += token_bytes[tok]
        done = (tok == eos_id or stop in text[s]
                or len(out[s]) == max_new_tokens)
        if done:
          llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
        else:
          still.append(s)
      live = still
      if live:
        decode([(out[s][-1], pos, s, True) for s in live])
        calls += 1
        idx = {s: i for i, s in enumerate(live)}
        pos += 1
    rows += out
  seconds = time.perf_counter() - t0
  llama_cpp.llama_sampler_free(chain)
  llama_cpp.llama_batch_free(batch)
  llama_cpp.llama_free(ctx)
  llama_cpp.llama_model_free(model)
  return {'rows': rows, 'seconds': seconds,
          'prefill_seconds': prefill_seconds, 'decode_calls': calls,
          'version': llama_cpp.__version__, 'threads': threads,
          'shared_prefix': len(block)}
