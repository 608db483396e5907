"""Binary: sample reasoning paths for unlabeled questions (LMSI stage 3).

Reads only `id` and `question` of a task split (gold answers never enter),
renders the few-shot CoT prompt, samples m paths per question and writes
`samples-SSSSS-of-NNNNN.jsonl` (`SampledPath` records) atomically with a
`.COMPLETED` marker. A restarted job skips finished shards.

`python -m lmsi.sample --gin_file=<model>.gin --gin_file=gin/runs/sample.gin
--gin.TASK=...` runs `sample_task`: a benchmark task, pool or mixture by
name, each member task with its own answer family and exemplars.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from lmsi import answers as answers_lib
from lmsi import checkpoints
from lmsi import decoder as decoder_lib
from lmsi import manifests
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


def exemplar_prefix(
    vocab: vocab_lib.ByteVocab, exemplars: Sequence[prompts.Exemplar],
    fmt: prompts.Format = prompts.Format.COT_FEWSHOT) -> list[int]:
  """The tokens every few-shot prompt of these exemplars starts with.

  Fixed by the exemplars alone (never by which questions a shard holds), so
  outputs do not depend on sharding. Empty for zero-shot formats.
  """
  if not exemplars or fmt not in (prompts.Format.COT_FEWSHOT,
                                  prompts.Format.DIRECT_FEWSHOT):
    return []
  probes = [prompts.render(fmt, q, exemplars) for q in ('x', 'How many?')]
  return sampling.common_prefix([vocab.encode(p) for p in probes])


def sample_prompts(
    model_config: decoder_lib.DecoderConfig, params: Any,
    prompt_texts: Sequence[str], ids: Sequence[str],
    config: sampling.SamplingConfig, *, vocab: vocab_lib.ByteVocab,
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
  > 0 and `answer_of(prompt index, text)`, samples are drawn that many at a
  time and a question stops once its leading answer can no longer be caught
  (off by default, as in the paper); its later samples are never drawn.
  `pad_to` is passed to `sampling.generate`.
  """
  out: list[list[tuple[str, float]]] = [[] for _ in prompt_texts]
  with_prefix, whole = [], []
  for i, text in enumerate(prompt_texts):
    ids_i = vocab.encode(text) if prefix is not None else ()
    extends = (prefix is not None and len(ids_i) > len(prefix.tokens) and
               tuple(ids_i[:len(prefix.tokens)]) == prefix.tokens)
    (with_prefix if extends else whole).append(i)
  prog = progress_lib.Progress(desc, len(prompt_texts), 'questions')
  m = config.num_samples
  chunk = early_stop_chunk if early_stop_chunk and answer_of else m
  for group, group_prefix in ((with_prefix, prefix), (whole, None)):
    for start in range(0, len(group), batch_questions):
      open_ = group[start:start + batch_questions]
      for first in range(0, m, chunk):
        if not open_:
          break
        gen = sampling.generate(
            model_config, params, vocab, [prompt_texts[i] for i in open_],
            [ids[i] for i in open_],
            dataclasses.replace(config, num_samples=min(chunk, m - first)),
            prefix=group_prefix, mesh=mesh, first_sample=first,
            pad_to=pad_to)
        for i, texts, logprobs in zip(open_, gen.texts, gen.logprobs):
          out[i].extend((t, float(lp)) for t, lp in zip(texts, logprobs))
        if chunk < m:
          open_ = [i for i in open_ if not _decided(
              [answer_of(i, t) for t, _ in out[i]], m)]
      prog.update(len(group[start:start + batch_questions]))
  return out


def _decided(answers: Sequence[str | None], m: int) -> bool:
  """Whether the leading answer can no longer be caught with m samples."""
  counts = collections.Counter(a for a in answers if a is not None)
  top = counts.most_common(2) + [(None, 0), (None, 0)]
  return top[0][1] - top[1][1] > m - len(answers)


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
    answer_family: how answers are parsed (`lmsi.answers.Family`).
    batch_questions: questions per device batch (each has m samples).
    shard_index, num_shards: this job's share (per process).
    mesh: this process's ('data', 'model') mesh (`sampling.generate`).
    share_prefix: prefill the exemplar block once and reuse its cache.
    early_stop_chunk: > 0 stops a question early once its vote is decided
      (see `sample_prompts`); 0 draws all m samples (the paper).
  """
  import jax  # pylint: disable=g-import-not-at-top
  procs, proc = jax.process_count(), jax.process_index()
  total = num_shards * procs
  index = shard_index * procs + proc
  path = shard_path(output_dir, index, total)
  if records.is_complete(path):
    print(f'sample: {path} is complete, skipping')
    return path
  render = lambda q: prompts.render(prompts.Format.COT_FEWSHOT, q.question,
                                    exemplars)
  mine = list(questions)[index::total]
  texts = [render(q) for q in mine]
  prefix = None
  tokens = exemplar_prefix(vocab, exemplars) if share_prefix else []
  if tokens:
    prefix = sampling.prefix_for(model_config, params, tokens, mesh)
  # One padded prompt length for the whole run, whatever this shard holds.
  pad_to = vocab_lib.bucket(max(
      [len(vocab.encode(render(q))) - len(tokens) for q in questions] + [1]))
  options = [prompts.options_of(q.question) for q in mine]
  paths = sample_prompts(
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
  records.write_jsonl(path, out)
  return path


def merge(output_dir: str) -> str:
  """Gathers a finished set of shards into `samples.merged.jsonl`.

  Checks that every shard of one sharding is complete and that no (id,
  sample) repeats; the merged order is (id, sample), so it does not depend
  on how many shards or hosts wrote it.

  Raises:
    FileNotFoundError / ValueError naming the missing or conflicting shards.
  """
  from lmsi import aggregate  # pylint: disable=g-import-not-at-top
  path = os.path.join(output_dir, 'samples.merged.jsonl')
  records.write_jsonl(path, aggregate.read_samples(output_dir))
  return path


def task_settings(
    task_name: str, *, exemplars: str | None = None,
    num_exemplars: int | None = None, answer_family: str | None = None,
) -> tuple[answers_lib.Family, tuple[prompts.Exemplar, ...], dict[str, Any]]:
  """A task's answer family and exemplars, and what a manifest records.

  Benchmark tasks (`tasks.releases.SPECS`) know theirs; `exemplars` and
  `answer_family` override them and are required for any other task.

  Returns:
    (family, exemplars, manifest entries incl. where a pool comes from).
  """
  from tasks import releases  # pylint: disable=g-import-not-at-top
  spec = releases.SPECS.get(task_name)
  if spec is None and (exemplars is None or answer_family is None):
    raise ValueError(f'{task_name!r} is not a benchmark task: set EXEMPLARS '
                     'and ANSWER_FAMILY')
  family = answers_lib.Family(answer_family or spec.family)
  name = exemplars or spec.exemplars
  notes = {'task': task_name, 'answer_family': family.value,
           'exemplars': name, 'num_exemplars': num_exemplars}
  if spec is not None and spec.pool_of:
    notes['pool_of'] = {'task': spec.pool_of[0], 'split': spec.pool_of[1]}
    notes['pool_note'] = spec.note
  return family, prompts.exemplars_for(name, num_exemplars), notes


def model_inputs(checkpoint_path: str, vocabulary: str) -> list[str]:
  """The files a sampling/eval run reads besides data: params, tokenizer."""
  return ([checkpoints.params_path(checkpoint_path)]
          + ([vocabulary] if vocabulary != 'bytes' else []))


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
    exemplars, num_exemplars, answer_family: see `task_settings`.
    max_questions: sample only the split's first N questions.
    batch_questions, shard_index, num_shards: as `sample`.
    num_partitions: the 'model' axis of this process's mesh over its local
      devices (T5X's num_partitions); 'data' takes the rest.
    param_dtype: 'bfloat16' keeps the sampling copy of the parameters in
      bf16 (activations stay float32); training is unaffected.
    share_prefix, early_stop_chunk: as `sample`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi import sharding  # pylint: disable=g-import-not-at-top
  from lmsi import inputs  # pylint: disable=g-import-not-at-top  # TF here.
  from lmsi import train  # pylint: disable=g-import-not-at-top
  params = train.restore_params(model_config, checkpoint_path)
  model_config, params = decoder_lib.with_dtype(model_config, params,
                                                param_dtype)
  vocab = vocab_lib.load(vocabulary)
  vocab_lib.check_model_vocab(vocab, model_config.vocab_size, vocabulary)
  mesh = None
  if jax.local_device_count() > 1 or num_partitions > 1:
    mesh = sharding.create_mesh(model=num_partitions,
                                devices=jax.local_devices())
    params = sampling.place_params(model_config, params, mesh)
  read = model_inputs(checkpoint_path, vocabulary)
  shards = []
  for name in inputs.member_tasks(task_name):
    out = output_dir if name == task_name else os.path.join(output_dir, name)
    family, exemplar_set, notes = task_settings(
        name, exemplars=exemplars, num_exemplars=num_exemplars,
        answer_family=answer_family)
    questions = load_questions(name, split, max_questions)
    manifest = manifests.stage_manifest(
        read, **notes, split=split, num_questions=len(questions),
        max_questions=max_questions, checkpoint=checkpoint_path,
        vocabulary=vocabulary, param_dtype=param_dtype,
        processes=jax.process_count(),
        mesh=dict(mesh.shape) if mesh is not None else None,
        share_prefix=share_prefix, early_stop_chunk=early_stop_chunk,
        sampling=dataclasses.asdict(sampling_config))
    records.write_json(os.path.join(out, 'sample_manifest.json'), manifest)
    shards.append(sample(
        model_config=model_config, params=params, questions=questions,
        output_dir=out, sampling_config=sampling_config,
        exemplars=exemplar_set, vocab=vocab, answer_family=family.value,
        batch_questions=batch_questions, shard_index=shard_index,
        num_shards=num_shards, mesh=mesh, share_prefix=share_prefix,
        early_stop_chunk=early_stop_chunk))
  return shards


if __name__ == '__main__':
  from lmsi import gin_flags  # pylint: disable=g-import-not-at-top
  gin_flags.main('lmsi.sample', 'sample_task', output_dir_arg='output_dir')
