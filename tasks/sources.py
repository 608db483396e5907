"""SeqIO sources over in-memory rows read from JSONL files (TF enters here).

Rows are read in Python (so a bad line is reported as file:line and field)
and handed to tf.data as a dict of string tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from lmsi.vocab import simple as vocab_lib
from lmsi.vocab import base as vocab_base

Rows = Callable[[], Sequence[Mapping[str, str]]]


def text_features(vocab: vocab_base.Vocabulary | None = None,
                  targets: Sequence[str] = ('targets',)
                  ) -> dict[str, seqio.Feature]:
  """`inputs` (no EOS) and each of `targets` (+EOS) in `vocab` (default
  bytes); a preference pairs task has targets ('chosen', 'rejected')."""
  sv = (vocab or vocab_lib.ByteVocab()).to_seqio()
  return {'inputs': seqio.Feature(sv, add_eos=False),
          **{t: seqio.Feature(sv, add_eos=True) for t in targets}}


def rows_source(splits: Mapping[str, Rows], fields: Sequence[str]
                ) -> seqio.FunctionDataSource:
  """A source whose split `s` yields the string `fields` of `splits[s]()`."""

  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
    del shuffle_files, seed  # One in-memory shard; the Task shuffles.
    rows = splits[split]()
    columns = {f: [str(r[f]) for r in rows] for f in fields}
    return tf.data.Dataset.from_tensor_slices(
        {f: tf.constant(v, tf.string, shape=[len(rows)])
         for f, v in columns.items()})

  return seqio.FunctionDataSource(dataset_fn, splits=list(splits))


def add_task(name: str, source: seqio.DataSource, *, tokenize: bool,
             vocab: vocab_base.Vocabulary | None = None, metric_fns=(),
             postprocess_fn=None, targets: Sequence[str] = ('targets',)
             ) -> seqio.Task:
  """(Re-)registers a task; text tasks get tokenized inputs/targets (in
  `vocab`, default bytes), inputs after BOS where `vocab.add_bos` asks, as
  the sampler's prompts (`vocab_base.prompt_ids`)."""
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  if tokenize:
    bos = ([_prepend_bos(vocab.bos_id)]
           if getattr(vocab, 'add_bos', False) else [])
    return seqio.TaskRegistry.add(
        name, source=source, output_features=text_features(vocab, targets),
        preprocessors=[seqio.preprocessors.tokenize, *bos,
                       seqio.preprocessors.append_eos_after_trim],
        metric_fns=list(metric_fns), postprocess_fn=postprocess_fn)
  return seqio.TaskRegistry.add(name, source=source, output_features={},
                                metric_fns=list(metric_fns),
                                postprocess_fn=postprocess_fn)


def _prepend_bos(bos_id: int):
  """A preprocessor putting `bos_id` before every tokenized `inputs`."""

  def prepend(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda ex: {
        **ex, 'inputs': tf.concat([tf.constant([bos_id], ex['inputs'].dtype),
                                   ex['inputs']], 0)})

  return prepend


def add_mixture(name: str, tasks: Sequence[str | tuple[str, float]],
                default_rate: float = 1.0) -> seqio.Mixture:
  """(Re-)registers a mixture; equal rates unless given ([open] paper)."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(tasks),
                                   default_rate=default_rate)
