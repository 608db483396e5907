"""Binary: sample reasoning paths for unlabeled questions (LMSI stage 3).

Reads only `id` and `question` of a task split (gold answers never enter),
renders the few-shot CoT prompt, samples m paths per question and writes
`samples-SSSSS-of-NNNNN.jsonl` (`SampledPath` records) atomically with a
`.COMPLETED` marker. A restarted job skips finished shards.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lmsi import answers as answers_lib
from lmsi import decoder as decoder_lib
from lmsi import progress as progress_lib
from lmsi import prompts
from lmsi import records
from lmsi import sampling
from lmsi import vocab as vocab_lib


def load_questions(task_name: str, split: str,
                   max_questions: int | None = None) -> list[records.Question]:
  """A split's questions with the gold answer dropped at the door."""
  from lmsi import inputs  # pylint: disable=g-import-not-at-top  # TF here.
  rows = inputs.load_split(task_name, split)[:max_questions]
  return [records.Question(task=task_name, id=r['id'], question=r['question'])
          for r in rows]


def sample_prompts(
    model_config: decoder_lib.DecoderConfig, params: Any,
    prompt_texts: Sequence[str], ids: Sequence[str],
    config: sampling.SamplingConfig, *, vocab: vocab_lib.ByteVocab,
    batch_questions: int, desc: str,
) -> list[list[tuple[str, float]]]:
  """Samples `config.num_samples` (text, logprob) per prompt, in batches."""
  out = []
  prog = progress_lib.Progress(desc, len(prompt_texts), 'questions')
  for start in range(0, len(prompt_texts), batch_questions):
    gen = sampling.generate(
        model_config, params, vocab, prompt_texts[start:start + batch_questions],
        ids[start:start + batch_questions], config)
    for texts, logprobs in zip(gen.texts, gen.logprobs):
      out.append([(t, float(lp)) for t, lp in zip(texts, logprobs)])
    prog.update(len(gen.texts))
  return out


def shard_path(output_dir: str, shard_index: int, num_shards: int) -> str:
  return os.path.join(output_dir,
                      f'samples-{shard_index:05d}-of-{num_shards:05d}.jsonl')


def sample(
    *,
    model_config: decoder_lib.DecoderConfig,
    params: Any,
    questions: Sequence[records.Question],
    output_dir: str,
    sampling_config: sampling.SamplingConfig,
    exemplars: Sequence[prompts.Exemplar],
    vocab: vocab_lib.ByteVocab,
    answer_family: str = 'number',
    batch_questions: int = 64,
    shard_index: int = 0,
    num_shards: int = 1,
) -> str:
  """Samples paths for this shard's questions; returns the shard's path.

  Args:
    model_config, params: the model.
    questions: all questions (this shard takes every num_shards-th).
    output_dir: where the shard file goes.
    sampling_config: m, temperature, top-k, ...
    exemplars: few-shot CoT exemplars.
    vocab: the model's tokenizer.
    answer_family: how answers are parsed (`lmsi.answers.Family`).
    batch_questions: questions per device batch (each has m samples).
    shard_index, num_shards: this job's share.
  """
  path = shard_path(output_dir, shard_index, num_shards)
  if records.is_complete(path):
    print(f'sample: {path} is complete, skipping')
    return path
  mine = list(questions)[shard_index::num_shards]
  texts = [prompts.render(prompts.Format.COT_FEWSHOT, q.question, exemplars)
           for q in mine]
  paths = sample_prompts(model_config, params, texts, [q.id for q in mine],
                         sampling_config, vocab=vocab,
                         batch_questions=batch_questions,
                         desc=f'sample shard {shard_index}')
  out = []
  for q, samples in zip(mine, paths):
    for i, (text, logprob) in enumerate(samples):
      out.append(records.SampledPath(
          task=q.task, id=q.id, sample=i, text=text,
          answer=answers_lib.extract_answer(text, answer_family),
          logprob=round(logprob, 4)))
  records.write_jsonl(path, out)
  return path
