"""Where data enters: task splits and training batches through SeqIO.

This is the only lmsi module (with `tasks/`) that imports seqio/TensorFlow,
and it does so lazily, so decoder, sampling and voting run without them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

import numpy as np


def close_names(name: str) -> list[str]:
  """Registered task and mixture names that look like `name` (best first)."""
  import seqio  # pylint: disable=g-import-not-at-top

  known = [*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names()]
  return difflib.get_close_matches(name, known, n=5, cutoff=0.6)


def get_mixture_or_task(name: str):
  """`seqio.get_mixture_or_task`, with close matches for an unknown name.

  Raises:
    ValueError: naming `name` and the registered names that look like it.
  """
  import seqio  # pylint: disable=g-import-not-at-top

  if (name not in seqio.TaskRegistry.names()
      and name not in seqio.MixtureRegistry.names()):
    raise ValueError(f'unknown SeqIO task or mixture {name!r}; did you mean '
                     f'one of {close_names(name)}? (a task registers when '
                     'its module is imported, e.g. `import tasks`)')
  return seqio.get_mixture_or_task(name)


def mixing_rates(name: str) -> dict[str, float]:
  """{task: rate} of a mixture, or {name: 1.0} for a task (for manifests)."""
  import seqio  # pylint: disable=g-import-not-at-top

  mixture_or_task = get_mixture_or_task(name)
  if isinstance(mixture_or_task, seqio.Mixture):
    return {t.name: float(mixture_or_task.get_rate(t))
            for t in mixture_or_task.tasks}
  return {name: 1.0}


def load_split(task_name: str, split: str) -> list[dict[str, str]]:
  """Reads a whole split of a registered task, in order, as str dicts.

  Raises:
    ValueError: for an unknown task (with close matches) or split.
  """
  task = get_mixture_or_task(task_name)
  if split not in task.splits:
    raise ValueError(f'task {task_name!r} has no split {split!r}; '
                     f'splits: {list(task.splits)}')
  ds = task.get_dataset(split=split, shuffle=False, num_epochs=1)
  return [{k: v.decode('utf-8') if isinstance(v, bytes) else v
           for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


def member_tasks(name: str) -> list[str]:
  """The task names of a mixture, or [name] for a task."""
  import seqio  # pylint: disable=g-import-not-at-top

  if name in seqio.MixtureRegistry.names():
    return [t.name for t in get_mixture_or_task(name).tasks]
  return [name]


def decoder_only_batch(inputs: list[np.ndarray], targets: list[np.ndarray],
                       length: int) -> dict[str, np.ndarray]:
  """Packs prefix-LM examples for a decoder-only model.

  Each row is `inputs ++ targets`, right-padded to the batch's longest row
  (rounded up to 32, at most `length`); position i predicts token
  i + 1; the loss is on target tokens only.

  Returns:
    tokens int32 [B, L], valid bool [B, L], labels int32 [B, L] (next
    token), weights float32 [B, L] (1 where labels are targets).
  """
  b = len(inputs)
  longest = max(len(x) + len(y) for x, y in zip(inputs, targets))
  # Pad to the batch's longest row rounded up to 32 (few shapes compile).
  length = min(length, -(-longest // 32) * 32)
  tokens = np.zeros((b, length), np.int32)
  weights = np.zeros((b, length), np.float32)
  for i, (x, y) in enumerate(zip(inputs, targets)):
    seq = np.concatenate([x, y])[:length]
    tokens[i, : len(seq)] = seq
    # Target token j sits at len(x) + j and is predicted at len(x) + j - 1.
    weights[i, max(len(x) - 1, 0): len(seq) - 1] = 1.0
  labels = np.zeros_like(tokens)
  labels[:, :-1] = tokens[:, 1:]
  return dict(tokens=tokens, valid=tokens != 0, labels=labels,
              weights=weights)


def training_batches(mixture_or_task_name: str,
                     task_feature_lengths: Mapping[str, int],
                     batch_size: int, *, seed: int, start_step: int = 0
                     ) -> Iterator[dict[str, np.ndarray]]:
  """Endless, deterministic training batches; resumes at `start_step`.

  The stream depends only on (mixture, lengths, batch size, seed), so a
  resumed run sees exactly the batches an uninterrupted one would.
  """
  length = sum(task_feature_lengths.values())
  ds = get_mixture_or_task(mixture_or_task_name).get_dataset(
      sequence_length=dict(task_feature_lengths), split='train', shuffle=True,
      seed=seed, num_epochs=None, trim_output_features=True)
  ds = ds.skip(start_step * batch_size)
  inputs, targets = [], []
  for ex in ds.as_numpy_iterator():  # endless unless a task is empty
    inputs.append(ex['inputs'])
    targets.append(ex['targets'])
    if len(inputs) == batch_size:
      yield decoder_only_batch(inputs, targets, length)
      inputs, targets = [], []
  raise ValueError(f'{mixture_or_task_name!r} ran out of examples: one of '
                   'its tasks is empty')
