"""Sample reasoning paths for unlabeled questions (LMSI stage 3).

Reads only `id` and `question` of a task split (gold answers never enter),
renders the few-shot CoT prompt, samples m paths per question and writes
`samples-SSSSS-of-NNNNN.jsonl` (`SampledPath` records) atomically with a
`.COMPLETED` marker. A restarted job skips finished shards.

`python -m lmsi.sample --gin_file=<model>.gin --gin_file=gin/runs/sample.gin
--gin.TASK=...` runs `sample_task`: a benchmark task, pool or mixture by
name, each member task with its own answer family and exemplars.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from absl import logging
import jax

from lmsi.data import answers as answers_lib
from lmsi.sampling import batching
from lmsi.model import decoder as decoder_lib
from lmsi.data import inputs
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.sampling import generation as sampling
from lmsi.data import shards as shards_lib
from lmsi.model import sharding
from lmsi.checkpoints import load
from lmsi.sampling import batched as stage
from lmsi.data import taskspec
from lmsi.vocab import base as vocab_base


def sample(
    *,
    model_config: decoder_lib.DecoderConfig,
    params: Any,
    questions: Sequence[records.Question],
    output_dir: str,
    sampling_config: sampling.SamplingConfig,
    exemplars: Sequence[prompts.Exemplar],
    vocab: vocab_base.Vocabulary,
    answer_family: str = 'number',
    batch_questions: int = 64,
    shard_index: int = 0,
    num_shards: int = 1,
    mesh: Any = None,
    share_prefix: bool = True,
    early_stop_chunk: int = 0,
) -> str:
  """Samples paths for this shard's questions; returns the shard's path.

  On a pod every process runs this: process p of P writes the global shard
  `shard_index * P + p` of `num_shards * P`, holding every such question and
  all m samples of each, so votes are computed where the samples are.

  Args:
    model_config, params: the model (params placed on `mesh` if given).
    questions: all questions (this shard takes every G-th, G shards in all).
    output_dir: where the shard file goes.
    sampling_config: m, temperature, top-k, ...
    exemplars: few-shot CoT exemplars.
    vocab: the model's tokenizer.
    answer_family: how answers are parsed (`lmsi.data.answers.Family`).
    batch_questions: questions per device batch (each has m samples).
    shard_index, num_shards: this job's share (per process).
    mesh: this process's ('data', 'model') mesh (`sampling.generate`).
    share_prefix: prefill the exemplar block once and reuse its cache.
    early_stop_chunk: > 0 stops a question early once its vote is decided
      (see `sample_prompts`); 0 draws all m samples (the paper).
  """
  procs, proc = jax.process_count(), jax.process_index()
  total = num_shards * procs
  index = shard_index * procs + proc
  path = shards_lib.shard_path(output_dir, index, total)
  if fileio.is_complete(path):
    logging.info('sample: %s is complete, skipping', path)
    return path
  render = lambda q: prompts.render(prompts.Format.COT_FEWSHOT, q.question,
                                    exemplars)
  mine = list(questions)[index::total]
  texts = [render(q) for q in mine]
  prefix = None
  tokens = stage.exemplar_prefix(vocab, exemplars) if share_prefix else []
  if tokens:
    prefix = sampling.prefix_for(model_config, params, tokens, mesh)
  # One padded prompt length for the whole run, whatever this shard holds.
  pad_to = batching.bucket(max(
      [len(vocab_base.prompt_ids(vocab, render(q))) - len(tokens)
       for q in questions] + [1]))
  options = [prompts.options_of(q.question) for q in mine]
  paths = stage.sample_prompts(
      model_config, params, texts, [q.id for q in mine], sampling_config,
      vocab=vocab, batch_questions=batch_questions,
      desc=f'sample shard {index}', prefix=prefix, mesh=mesh,
      answer_of=lambda i, t: answers_lib.extract_answer(
          t, answer_family, options=options[i]),
      early_stop_chunk=early_stop_chunk, pad_to=pad_to)
  out = []
  for q, opts, samples in zip(mine, options, paths):
    for i, (text, logprob) in enumerate(samples):
      out.append(records.SampledPath(
          task=q.task, id=q.id, sample=i, text=text,
          answer=answers_lib.extract_answer(text, answer_family,
                                            options=opts),
          logprob=round(logprob, 4)))
  fileio.write_jsonl(path, out)
  return path


def sample_task(
    *,
    model_config: decoder_lib.DecoderConfig,
    checkpoint_path: str,
    task_name: str,
    split: str,
    output_dir: str,
    sampling_config: sampling.SamplingConfig,
    vocabulary: str = 'bytes',
    exemplars: str | None = None,
    num_exemplars: int | None = None,
    answer_family: str | None = None,
    max_questions: int | None = None,
    batch_questions: int = 64,
    shard_index: int = 0,
    num_shards: int = 1,
    num_partitions: int = 1,
    param_dtype: str = 'float32',
    share_prefix: bool = True,
    early_stop_chunk: int = 0,
) -> list[str]:
  """Samples a task, or each task of a mixture; returns the shard paths.

  A task's shard goes to `output_dir`; a mixture's member task `t` writes
  to `output_dir/t`. Each directory gets `sample_manifest.json`.

  Args:
    model_config, checkpoint_path: the model (a model or step dir).
    task_name: a registered task or mixture (its questions, no gold).
    split: the split to sample, e.g. 'train' of a pool task.
    output_dir: where shards go.
    sampling_config: m, temperature, top-k, ...
    vocabulary: 'bytes' or a `WordVocab` file (`lmsi.vocab.load`).
    exemplars, num_exemplars, answer_family: see `taskspec.task_settings`.
    max_questions: sample only the split's first N questions.
    batch_questions, shard_index, num_shards: as `sample`.
    num_partitions: the 'model' axis of this process's mesh over its local
      devices (T5X's num_partitions); 'data' takes the rest.
    param_dtype: 'bfloat16' keeps the sampling copy of the parameters in
      bf16 (activations stay float32); training is unaffected.
    share_prefix, early_stop_chunk: as `sample`.
  """
  loaded = load.load_model(checkpoint_path, model_config, vocabulary,
                           param_dtype)
  model_config, params, vocab = loaded.config, loaded.params, loaded.vocab
  mesh = None
  if jax.local_device_count() > 1 or num_partitions > 1:
    mesh = sharding.create_mesh(model=num_partitions,
                                devices=jax.local_devices())
    params = sampling.place_params(model_config, params, mesh)
  read = loaded.inputs
  paths = []
  for name in inputs.member_tasks(task_name):
    out = output_dir if name == task_name else os.path.join(output_dir, name)
    family, exemplar_set, notes = taskspec.task_settings(
        name, exemplars=exemplars, num_exemplars=num_exemplars,
        answer_family=answer_family)
    questions = taskspec.load_questions(name, split, max_questions)
    manifest = manifests.stage_manifest(
        read, **notes, split=split, num_questions=len(questions),
        max_questions=max_questions, checkpoint=checkpoint_path,
        vocabulary=vocabulary, param_dtype=param_dtype,
        processes=jax.process_count(),
        mesh=dict(mesh.shape) if mesh is not None else None,
        share_prefix=share_prefix, early_stop_chunk=early_stop_chunk,
        sampling=dataclasses.asdict(sampling_config))
    fileio.write_json(os.path.join(out, 'sample_manifest.json'), manifest)
    paths.append(sample(
        model_config=model_config, params=params, questions=questions,
        output_dir=out, sampling_config=sampling_config,
        exemplars=exemplar_set, vocab=vocab, answer_family=family.value,
        batch_questions=batch_questions, shard_index=shard_index,
        num_shards=num_shards, mesh=mesh, share_prefix=share_prefix,
        early_stop_chunk=early_stop_chunk))
  return paths
