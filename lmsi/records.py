"""Records that stages exchange, and atomic, resumable JSONL files.

Each stage writes `name.jsonl` through a temp file and a rename, then an empty
`name.jsonl.COMPLETED` marker; a restarted stage skips files with a marker and
redoes the rest. Readers name the file, line and field of any bad record.
Paths may be local or `gs://...` (`lmsi.files`); on GCS the rename is a copy
and a delete, and the marker, written last, is what makes a file count.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from lmsi import files

T = TypeVar('T')
MARKER = '.COMPLETED'


@dataclasses.dataclass(frozen=True, kw_only=True)
class Question:
  """One task example as stages 3-5 see it: no gold answer."""

  task: str
  id: str
  question: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampledPath:
  """One sampled reasoning path (stage 3 output)."""

  task: str
  id: str
  sample: int
  text: str
  answer: str | None
  logprob: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelfGenExample:
  """One self-generated training example (stage 4 output). No gold field."""

  task: str
  id: str
  sample: int
  format: str
  inputs: str
  targets: str
  vote_share: float


def to_json(record: Any) -> str:
  return json.dumps(dataclasses.asdict(record), sort_keys=True,
                    ensure_ascii=False)


def _parse_object(line: str, where: str) -> dict:
  """One JSON object from a line, naming `where` (file:line) on error."""
  try:
    raw = json.loads(line)
  except json.JSONDecodeError as e:
    raise ValueError(f'{where}: malformed JSON ({e.msg}: column {e.colno})'
                     ) from None
  if not isinstance(raw, dict):
    raise ValueError(f'{where}: expected a JSON object, got '
                     f'{type(raw).__name__}')
  return raw


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _has_type(value: Any, hint: Any) -> bool:
  """Whether a JSON value fits a field annotation (no bool for int/float)."""
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_has_type(value, h) for h in typing.get_args(hint))
  if origin is not None:  # e.g. list[str | None]: the container only
    return isinstance(value, origin)
  if hint is type(None):
    return value is None
  if isinstance(value, bool) and hint in (int, float):
    return False
  if hint is float:
    return isinstance(value, (int, float))
  return hint is Any or isinstance(value, hint)


def from_json(cls: type[T], line: str, where: str) -> T:
  """Parses one JSONL line into `cls`, naming `where` (file:line) on error.

  Raises:
    ValueError: "file:line: ..." for malformed JSON, a missing field or a
      field whose value does not have the annotated type.
  """
  raw = _parse_object(line, where)
  types_ = _field_types(cls)
  kwargs = {}
  for field in dataclasses.fields(cls):
    if field.name not in raw:
      raise ValueError(f'{where}: missing field {field.name!r} '
                       f'expected by {cls.__name__}')
    value = raw[field.name]
    if not _has_type(value, types_[field.name]):
      kind = field.type if isinstance(field.type, str) else getattr(
          field.type, '__name__', field.type)
      raise ValueError(f'{where}: field {field.name!r} of {cls.__name__} '
                       f'must be {kind}, got {value!r}')
    kwargs[field.name] = value
  return cls(**kwargs)


def _marker(path: str) -> dict | None:
  """The marker's {records, bytes, sha256}; {} for an empty legacy marker."""
  if not files.exists(path + MARKER):
    return None
  with files.open(path + MARKER) as f:
    text = f.read()
  try:
    return json.loads(text) if text.strip() else {}
  except json.JSONDecodeError:
    return None  # a torn marker is no marker


def is_complete(path: str) -> bool:
  """Whether `path` was finished: a marker whose byte count still matches.

  A file truncated (or grown) after its marker was written, or a torn
  marker, counts as unfinished, so the stage that writes it redoes it.
  """
  marker = _marker(path)
  if marker is None or not files.exists(path):
    return False
  return 'bytes' not in marker or files.size(path) == marker['bytes']


def write_atomic(path: str, write: Callable[[IO], None],
                 binary: bool = False) -> None:
  """Calls `write(f)` on a temp file, syncs it and renames it onto `path`
  (no marker): the one atomic writer of lmsi.

  The temp name is unique per call, so processes on different hosts of a pod
  never share one.

  Raises:
    OSError: naming the directory if it is full or not writable; `path`
      keeps its old content and no temp file is left.
  """
  tmp = f'{path}.tmp-{uuid.uuid4().hex[:12]}'
  with files.naming_write_errors(path):
    try:
      files.makedirs(os.path.dirname(path) or '.')
      with files.open(tmp, 'wb' if binary else 'w') as f:
        write(f)
        files.sync(f)
      files.rename(tmp, path)
    except OSError:
      try:
        files.remove(tmp)
      except OSError:
        pass  # never created, or the directory refuses even that
      raise


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (`write_atomic`)."""
  write_atomic(path, lambda f: f.write(text))


def write_jsonl(path: str, records: Iterable[Any]) -> int:
  """Writes records atomically, then the `.COMPLETED` marker.

  Returns:
    The number of records written.
  """
  if is_complete(path):
    files.remove(path + MARKER)  # Rewriting: invalidate first.
  lines = [to_json(r) for r in records]
  text = ''.join(line + '\n' for line in lines)
  write_text_atomic(path, text)
  data = text.encode('utf-8')
  write_text_atomic(path + MARKER, json.dumps({
      'records': len(lines), 'bytes': len(data),
      'sha256': hashlib.sha256(data).hexdigest()}) + '\n')
  return len(lines)


def read_jsonl(path: str, cls: type[T], *, require_marker: bool = True
               ) -> Iterator[T]:
  """Reads records written by `write_jsonl`.

  Raises:
    FileNotFoundError: if the file (or its marker) is missing.
    ValueError: naming file:line for a malformed or truncated record.
  """
  marker = _marker(path) if require_marker else {}
  if marker is None:
    raise FileNotFoundError(f'{path} has no {MARKER} marker: the stage that '
                            'writes it did not finish')
  with files.open(path, 'rb') as f:
    data = f.read()
  if marker.get('sha256') not in (None, hashlib.sha256(data).hexdigest()):
    raise ValueError(
        f'{path}: corrupt or truncated: {len(data)} bytes, sha256 differs '
        f'from its {MARKER} marker ({marker["bytes"]} bytes, '
        f'{marker["records"]} records); delete it to redo its stage')
  for n, line in enumerate(data.decode('utf-8').splitlines(keepends=True), 1):
    if not line.endswith('\n'):
      raise ValueError(f'{path}:{n}: truncated line (no newline at end)')
    if line.strip():
      yield from_json(cls, line, f'{path}:{n}')


def write_json(path: str, obj: Any) -> None:
  """Writes a JSON document atomically (sorted keys, indented)."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_jsonl_dicts(path: str) -> Iterator[dict]:
  """Reads JSON objects from a data file (no marker needed), naming file:line.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: for a malformed line or a line that is not an object.
  """
  if not files.exists(path):
    raise FileNotFoundError(f'data file {path} does not exist')
  with files.open(path) as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        yield _parse_object(line, f'{path}:{n}')
