"""Benchmark rows from official release files or TFDS (LMSI stage 1 input).

Every benchmark task module (`gsm8k`, `arc`, `openbookqa`, `anli`) turns one
raw example into a row {id, question, answer}: `question` is the text the
prompt needs and `answer` the normalised gold. Rows come from one of two
sources, picked by the `source` argument (a gin macro in the run files):

  * 'files': the official release files in their published layout under a
    data directory (default: the `LMSI_DATA_DIR` environment variable). Rows
    are read in Python, so a bad line is reported as file:line and field.
  * 'tfds': the TFDS builders (`gsm8k`, `ai2_arc/...`, `openbookqa`,
    `anli/r1..r3`), prepared under `tfds_data_dir` or downloaded.

Both give identical rows for the same example; TFDS reorders examples, so
ids never depend on file order. This module also registers the tasks: the
benchmark task (all splits, gold kept, accuracy metric) and its unlabeled
pool task (`id`, `question` only: the gold never reaches stages 3-5).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lmsi.data import answers as answers_lib
from lmsi.data import prompts
from lmsi.runtime import fileio
from lmsi.data import taskspec
from tasks import sources

DATA_DIR_ENV = 'LMSI_DATA_DIR'
SOURCES = ('files', 'tfds')
FIELDS = ('id', 'question', 'answer')
POOL_FIELDS = ('id', 'question')
Row = dict[str, str]


# The spec a task module writes; stages 3-7 read it from `lmsi.data.taskspec`.
Spec = taskspec.Spec


def resolve_data_dir(data_dir: str | None, layout: str) -> str:
  """`data_dir`, else $LMSI_DATA_DIR; checked to exist.

  Args:
    data_dir: a directory or None.
    layout: the expected layout, quoted in the error.

  Raises:
    FileNotFoundError: naming the path and the expected layout.
  """
  path = data_dir or os.environ.get(DATA_DIR_ENV)
  if not path:
    raise FileNotFoundError(
        f'no benchmark data directory: pass data_dir (gin: DATA_DIR) or set '
        f'${DATA_DIR_ENV}; expected layout: {layout}')
  if not os.path.isdir(path):
    raise FileNotFoundError(f'benchmark data directory {path!r} does not '
                            f'exist; expected layout: {layout}')
  return path


def require_files(paths: Sequence[str], layout: str) -> None:
  """Raises FileNotFoundError naming the first missing file and the layout."""
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'release file {path} is missing; expected '
                              f'layout: {layout}')


def field(raw: Mapping[str, Any], dotted: str, kind: type = str) -> Any:
  """`raw['a']['b']` for 'a.b', checked to be a `kind`.

  Raises:
    ValueError: naming the field, for a missing key or a wrong type.
  """
  value = raw
  for key in dotted.split('.'):
    if not isinstance(value, Mapping) or key not in value:
      raise ValueError(f'missing field {dotted!r}')
    value = value[key]
  if not isinstance(value, kind):
    raise ValueError(f'field {dotted!r} must be a {kind.__name__}, got '
                     f'{value!r}')
  return value


def read_release(path: str, parse: Callable[[dict], Row]) -> list[Row]:
  """Parses each JSON line of an official release file into a row.

  Raises:
    ValueError: as "path:line: ..." for malformed JSON, a missing or
      mistyped field, or a gold answer that does not parse.
  """
  rows = []
  for n, raw in enumerate(fileio.read_jsonl_dicts(path), 1):
    try:
      rows.append(parse(raw))
    except ValueError as e:
      raise ValueError(f'{path}:{n}: {e}') from None
  return check_ids(rows, path)


def check_ids(rows: list[Row], where: str) -> list[Row]:
  """Raises ValueError if two rows share an id; returns `rows`."""
  seen = set()
  for row in rows:
    if row['id'] in seen:
      raise ValueError(f'{where}: duplicate example id {row["id"]!r}')
    seen.add(row['id'])
  return rows


def content_id(prefix: str, *parts: str) -> str:
  """A stable id from content, for builders that drop the official id."""
  digest = hashlib.sha256('\x1f'.join(parts).encode('utf-8')).hexdigest()
  return f'{prefix}-{digest[:12]}'


def gold(answer: str, family: answers_lib.Family) -> str:
  """The canonical gold answer; ValueError if it does not parse."""
  canonical = answers_lib.canonical_answer(answer, family)
  if canonical is None:
    raise ValueError(f'gold answer {answer!r} is not a valid '
                     f'{family.value} answer')
  return canonical


def text(value: Any) -> str:
  """A TFDS string feature (bytes) as str."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def tfds_rows(builder: str, split: str, convert: Callable[[dict], Row],
              tfds_data_dir: str | None = None) -> list[Row]:
  """Reads a TFDS split in stored order and converts each example.

  Like `tfds.load`, downloads and prepares the dataset if it is absent.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = tfds.load(builder, split=split, data_dir=tfds_data_dir,
                 shuffle_files=False)
  rows = [convert(ex) for ex in tfds.as_numpy(ds)]
  return check_ids(rows, f'tfds {builder}:{split}')


def release_splits(
    source: str, *, data_dir: str | None, tfds_data_dir: str | None,
    layout: str, files: Mapping[str, str], tfds_builder: str,
    parse: Callable[[str, dict], Row], convert: Callable[[str, dict], Row],
    optional: Sequence[str] = ()) -> dict[str, Callable[[], list[Row]]]:
  """Split -> a lazy reader of its rows, from the release files or TFDS.

  Args:
    source: 'files' or 'tfds'.
    data_dir: the benchmark data directory ('files'); default
      $LMSI_DATA_DIR.
    tfds_data_dir: TFDS's data_dir ('tfds'); default TFDS's own.
    layout: the expected file layout, quoted in errors.
    files: split -> its release file, relative to the data directory.
    tfds_builder: the TFDS builder of every split ('tfds').
    parse: (split, a release line's JSON) -> row ('files').
    convert: (split, a decoded TFDS example) -> row ('tfds').
    optional: splits whose file may be missing ('files'); left out then.

  Raises:
    ValueError: for an unknown source.
    FileNotFoundError: naming the missing directory or file and the layout.
  """
  if check_source(source) == 'files':
    root = resolve_data_dir(data_dir, layout)
    paths = {s: os.path.join(root, f) for s, f in files.items()}
    require_files([p for s, p in paths.items() if s not in optional], layout)
    return {s: (lambda s=s, p=p: read_release(p, functools.partial(parse, s)))
            for s, p in paths.items() if os.path.isfile(p)}
  return {s: (lambda s=s: tfds_rows(tfds_builder, s,
                                    functools.partial(convert, s),
                                    tfds_data_dir)) for s in files}


def postprocessor(family: answers_lib.Family):
  """A SeqIO postprocess_fn: a generation (or gold) -> canonical answer."""

  def postprocess(output, example=None, is_target=False):
    output = text(output)
    if is_target:
      return answers_lib.canonical_answer(output, family)
    question = text(example['question']) if example else ''
    return answers_lib.extract_answer(
        output, family, options=prompts.options_of(question))

  return postprocess


def accuracy(targets: Sequence[str | None], predictions: Sequence[str | None],
             *, family: answers_lib.Family) -> dict[str, float]:
  """SeqIO metric: % of predictions equal to the gold (None never equals)."""
  hits = sum(answers_lib.answers_equal(p, t, family)
             for t, p in zip(targets, predictions))
  return {'accuracy': 100.0 * hits / max(len(targets), 1)}


def pool_name(task_name: str) -> str:
  """'lmsi_gsm8k_v1' -> 'lmsi_gsm8k_pool_v1'."""
  stem, version = task_name.rsplit('_', 1)
  return f'{stem}_pool_{version}'


def add_benchmark(name: str, splits: Mapping[str, Callable[[], list[Row]]],
                  benchmark_spec: Spec, *, pool_split: str, pool_note: str = ''
                  ) -> tuple[str, str]:
  """Registers a benchmark task and its pool task `<name>_pool_v<N>`.

  Args:
    name: e.g. 'lmsi_gsm8k_v1'.
    splits: split name -> a function reading that split's rows (called
      lazily, when a dataset is built).
    benchmark_spec: family and exemplars, recorded in `SPECS`.
    pool_split: the split whose questions form the unlabeled pool; the
      pool task serves it as 'train', without gold.
    pool_note: why the pool is not the train split, if it is not.

  Returns:
    (task name, pool task name).
  """
  sources.add_task(
      name, sources.rows_source(splits, FIELDS), tokenize=False,
      postprocess_fn=postprocessor(benchmark_spec.family),
      metric_fns=[functools.partial(accuracy, family=benchmark_spec.family)])
  taskspec.SPECS[name] = benchmark_spec
  pool = pool_name(name)
  sources.add_task(
      pool, sources.rows_source({'train': splits[pool_split]}, POOL_FIELDS),
      tokenize=False)
  taskspec.SPECS[pool] = dataclasses.replace(
      benchmark_spec, pool_of=(name, pool_split), note=pool_note)
  return name, pool


def check_source(source: str) -> str:
  """Returns `source` if it is 'files' or 'tfds'; ValueError otherwise."""
  if source not in SOURCES:
    raise ValueError(f'unknown benchmark source {source!r}; use one of '
                     f'{SOURCES}')
  return source
