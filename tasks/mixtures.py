"""The paper's benchmark mixtures, and all benchmarks in one call (stage 1).

`register(data_dir=None, source='files')` registers every benchmark task and
its unlabeled pool (`tasks.gsm8k`, `arc`, `openbookqa`, `anli`) and:
  * `lmsi_multitask_pool_v1`: the pools of the paper's six-task study
    (GSM8K, DROP, ARC-c, OpenBookQA, ANLI-A2, ANLI-A3), split 'train'. DROP
    is absent: its files are not in the data snapshot.
  * `lmsi_multitask_eval_v1`: the same datasets' evaluation tasks, split
    'test' (`EVAL_SPLIT`).
The benchmark tasks are untokenized text, so these mixtures are read task by
task (`lmsi.data.inputs.member_tasks`); `lmsi.sample` and `lmsi.aggregate`
accept them and run each member with its own answer family and exemplars.
`register_selfgen` builds the multi-task fine-tuning mixture
`lmsi_selfgen_multitask_r<k>` from the per-dataset self-generated files.

Gin names a task or mixture through `registered(name, source=..., ...)`,
which registers everything with the run's data settings first. Importing
`tasks` registers the benchmarks from $LMSI_DATA_DIR when it is set.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import seqio

from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import taskspec
from tasks import anli
from tasks import arc
from tasks import arithmetic
from tasks import gsm8k
from tasks import openbookqa
from tasks import releases
from tasks import selfgen
from tasks import sources

MULTITASK_POOL = 'lmsi_multitask_pool_v1'
MULTITASK_EVAL = 'lmsi_multitask_eval_v1'
EVAL_SPLIT = 'test'
# The paper's six tasks (App. A) in its table order, without DROP.
MULTITASK = (gsm8k.TASK, arc.task_name('challenge'), openbookqa.TASK,
             anli.task_name(2), anli.task_name(3))


# Datasets whose files were missing at the last `register`, with the reason.
SKIPPED: dict[str, str] = {}


def register(data_dir: str | None = None, source: str = 'files',
             tfds_data_dir: str | None = None,
             anli_pool_split: str = 'validation') -> list[str]:
  """Registers every benchmark whose data is there, its pool and mixtures.

  A dataset whose release files are missing is skipped (and recorded in
  `SKIPPED`), so a data directory with GSM8K alone serves GSM8K; the
  multi-task mixtures are registered once all their datasets are.

  Args:
    data_dir: the release files' directory ('files'); default
      $LMSI_DATA_DIR.
    source: 'files' or 'tfds'.
    tfds_data_dir: TFDS's data_dir ('tfds').
    anli_pool_split: 'validation' (default; train files are missing here)
      or 'train' (the paper's choice).

  Returns:
    The benchmark task names registered.
  """
  releases.check_source(source)
  kwargs = dict(data_dir=data_dir, source=source, tfds_data_dir=tfds_data_dir)
  modules = {'gsm8k': gsm8k.register, 'arc': arc.register,
             'openbookqa': openbookqa.register,
             'anli': lambda **kw: anli.register(**kw,
                                                pool_split=anli_pool_split)}
  names = []
  SKIPPED.clear()
  for dataset, register_fn in modules.items():
    try:
      out = register_fn(**kwargs)
    except FileNotFoundError as e:
      SKIPPED[dataset] = str(e)
      continue
    names += [out] if isinstance(out, str) else out
  if set(MULTITASK) <= set(names):
    sources.add_mixture(MULTITASK_POOL,
                        [releases.pool_name(t) for t in MULTITASK])
    sources.add_mixture(MULTITASK_EVAL, list(MULTITASK))
  return names


def registered(name: str, *, source: str = 'files',
               data_dir: str | None = None,
               tfds_data_dir: str | None = None,
               anli_pool_split: str = 'validation') -> str:
  """Registers the benchmarks (see `register`) and returns `name`.

  Gin binds a run's TASK through this, so naming a task is enough. A task
  registered elsewhere (e.g. by an experiment's own module) passes too.
  The embedded arithmetic task (`tasks.arithmetic.TASK`) is registered from
  `data_dir`, a directory `lmsi.demo.arithmetic.write_splits` wrote.

  Raises:
    ValueError: if `name` is then neither a task nor a mixture, with the
      reasons any benchmark was skipped.
    FileNotFoundError: for the arithmetic task, if `data_dir` is unset (and
      the task is not registered yet) or lacks a split file.
  """
  if name == arithmetic.TASK and (
      data_dir or name not in seqio.TaskRegistry.names()):
    _register_arithmetic(data_dir)
    return name
  register(data_dir, source, tfds_data_dir, anli_pool_split)
  if (name not in seqio.TaskRegistry.names()
      and name not in seqio.MixtureRegistry.names()):
    skipped = ''.join(f'\n  {d}: {why}' for d, why in SKIPPED.items())
    raise ValueError(f'{name!r} is not a registered task or mixture; did '
                     f'you mean one of {inputs.close_names(name)}? '
                     f'benchmark tasks: {sorted(taskspec.SPECS)}'
                     + (f'; skipped:{skipped}' if skipped else ''))
  return name


def _register_arithmetic(data_dir: str | None) -> None:
  """`tasks.arithmetic.register(data_dir)`, once its split files are seen."""
  if not data_dir:
    raise FileNotFoundError(
        f'task {arithmetic.TASK!r} needs its data directory: set DATA_DIR to '
        'one that lmsi.demo.arithmetic.write_splits wrote (e.g. '
        'runs/demo/data)')
  missing = [f'{s}.jsonl' for s in arithmetic.SPLITS
             if not os.path.isfile(os.path.join(data_dir, f'{s}.jsonl'))]
  if missing:
    raise FileNotFoundError(
        f'{data_dir!r} is not an arithmetic data directory: it lacks '
        f'{missing} (lmsi.demo.arithmetic.write_splits writes them; the demo '
        'writes runs/demo/data)')
  arithmetic.register(data_dir)


def register_selfgen(selfgen_files: Mapping[str, str], round_: int, *,
                     vocabulary: str = 'bytes') -> str:
  """The multi-task fine-tuning mixture over per-dataset selfgen files.

  Args:
    selfgen_files: dataset (e.g. 'gsm8k', 'anli_r2') -> the `selfgen.jsonl`
      that `lmsi.aggregate` wrote for it.
    round_: the LMSI round.
    vocabulary: 'bytes' or a `WordVocab` file.

  Returns:
    The mixture name, `lmsi_selfgen_multitask_r<round>`.
  """
  names = []
  for dataset, path in sorted(selfgen_files.items()):
    selfgen.register(path, dataset, round_, vocabulary=vocabulary)
    names += [selfgen.task_name(dataset, round_, f) for f in prompts.Format
              if selfgen.task_name(dataset, round_, f)
              in seqio.TaskRegistry.names()]
  name = f'lmsi_selfgen_multitask_r{round_}'
  sources.add_mixture(name, names)
  return name


if os.environ.get(releases.DATA_DIR_ENV):
  register()  # what is missing is skipped: importing never fails on data
  if SKIPPED:
    warnings.warn(f'${releases.DATA_DIR_ENV}: benchmarks not registered: '
                  f'{sorted(SKIPPED)}')
