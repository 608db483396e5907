"""What the sampling, evaluation and probe stages share (LMSI stages 3-7).

The exemplar prefix every few-shot prompt starts with, batched sampling of
prompts (`sample_prompts`) and the early-stopped vote's rule (`decided`).
The stage binaries (`lmsi.sample`, `lmsi.evaluate`, `lmsi.probe`) are
built on these and on `lmsi.data.taskspec` (a task's settings and questions).
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable, Sequence
from typing import Any

import tqdm

from lmsi.model import decoder as decoder_lib
from lmsi.data import prompts
from lmsi.sampling import generation as sampling
from lmsi.vocab import base as vocab_base


def exemplar_prefix(
    vocab: vocab_base.Vocabulary, exemplars: Sequence[prompts.Exemplar],
    fmt: prompts.Format = prompts.Format.COT_FEWSHOT) -> list[int]:
  """The tokens every few-shot prompt of these exemplars starts with.

  Fixed by the exemplars alone (never by which questions a shard holds), so
  outputs do not depend on sharding. Empty for zero-shot formats.
  """
  if not exemplars or fmt not in (prompts.Format.COT_FEWSHOT,
                                  prompts.Format.DIRECT_FEWSHOT):
    return []
  probes = [prompts.render(fmt, q, exemplars) for q in ('x', 'How many?')]
  return sampling.common_prefix(
      [vocab_base.prompt_ids(vocab, p) for p in probes])


def sample_prompts(
    model_config: decoder_lib.DecoderConfig, params: Any,
    prompt_texts: Sequence[str], ids: Sequence[str],
    config: sampling.SamplingConfig, *, vocab: vocab_base.Vocabulary,
    batch_questions: int, desc: str,
    prefix: sampling.Prefix | None = None,
    mesh: Any = None,
    answer_of: Callable[[int, str], str | None] | None = None,
    early_stop_chunk: int = 0,
    pad_to: int = 0,
) -> list[list[tuple[str, float]]]:
  """Samples `config.num_samples` (text, logprob) per prompt, in batches.

  Prompts that extend `prefix` reuse its cache; the others (a tokenizer may
  merge across the boundary) are prefilled whole. With `early_stop_chunk`
  > 0 and `answer_of(prompt index, text)`, a question is judged after each
  `early_stop_chunk` of its samples and stops once its leading answer can no
  longer be caught (off by default, as in the paper): its later samples are
  never drawn (`sampling.generate`'s `decided`, inside the decode loop).
  `pad_to` is passed to `sampling.generate`.
  """
  out: list[list[tuple[str, float]]] = [[] for _ in prompt_texts]
  with_prefix, whole = [], []
  for i, text in enumerate(prompt_texts):
    ids_i = (vocab_base.prompt_ids(vocab, text) if prefix is not None
             else ())
    extends = (prefix is not None and len(ids_i) > len(prefix.tokens) and
               tuple(ids_i[:len(prefix.tokens)]) == prefix.tokens)
    (with_prefix if extends else whole).append(i)
  m = config.num_samples
  early = bool(early_stop_chunk and answer_of)
  # A progress line every 10 s at most (a log, not a flood, when piped).
  with tqdm.tqdm(total=len(prompt_texts), desc=desc, unit='questions',
                 file=sys.stderr, mininterval=10.0) as bar:
    for group, group_prefix in ((with_prefix, prefix), (whole, None)):
      for start in range(0, len(group), batch_questions):
        batch = group[start:start + batch_questions]
        judge = (lambda j, texts, batch=batch: decided(
            [answer_of(batch[j], t) for t in texts], m)) if early else None
        gen = sampling.generate(
            model_config, params, vocab, [prompt_texts[i] for i in batch],
            [ids[i] for i in batch], config, prefix=group_prefix, mesh=mesh,
            pad_to=pad_to, decided=judge, check_every=early_stop_chunk)
        for i, texts, logprobs in zip(batch, gen.texts, gen.logprobs):
          out[i].extend((t, float(lp)) for t, lp in zip(texts, logprobs))
        bar.update(len(batch))
  return out


def decided(answers: Sequence[str | None], m: int) -> bool:
  """Whether the leading answer can no longer be caught with m samples."""
  counts = collections.Counter(a for a in answers if a is not None)
  top = counts.most_common(2) + [(None, 0), (None, 0)]
  return top[0][1] - top[1][1] > m - len(answers)
