"""Records that stages exchange, and atomic, resumable JSONL files.

Each stage writes `name.jsonl` through a temp file and a rename, then an empty
`name.jsonl.COMPLETED` marker; a restarted stage skips files with a marker and
redoes the rest. Readers name the file, line and field of any bad record.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

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
    raise ValueError(f'{where}: malformed JSON ({e.msg} at column {e.colno})'
                     ) from None
  if not isinstance(raw, dict):
    raise ValueError(f'{where}: expected a JSON object, got {type(raw).__name__}')
  return raw


def from_json(cls: type[T], line: str, where: str) -> T:
  """Parses one JSONL line into `cls`, naming `where` (file:line) on error."""
  raw = _parse_object(line, where)
  kwargs = {}
  for field in dataclasses.fields(cls):
    if field.name not in raw:
      raise ValueError(f'{where}: missing field {field.name!r} '
                       f'expected by {cls.__name__}')
    kwargs[field.name] = raw[field.name]
  return cls(**kwargs)


def is_complete(path: str) -> bool:
  return os.path.exists(path + MARKER)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` via a temp file and rename (no marker)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_jsonl(path: str, records: Iterable[Any]) -> int:
  """Writes records atomically, then the `.COMPLETED` marker.

  Returns:
    The number of records written.
  """
  if is_complete(path):
    os.remove(path + MARKER)  # Rewriting: invalidate first.
  lines = [to_json(r) for r in records]
  write_text_atomic(path, ''.join(line + '\n' for line in lines))
  write_text_atomic(path + MARKER, '')
  return len(lines)


def read_jsonl(path: str, cls: type[T], *, require_marker: bool = True
               ) -> Iterator[T]:
  """Reads records written by `write_jsonl`.

  Raises:
    FileNotFoundError: if the file (or its marker) is missing.
    ValueError: naming file:line for a malformed or truncated record.
  """
  if require_marker and not is_complete(path):
    raise FileNotFoundError(f'{path} has no {MARKER} marker: the stage that '
                            'writes it did not finish')
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
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
  if not os.path.exists(path):
    raise FileNotFoundError(f'data file {path} does not exist')
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        yield _parse_object(line, f'{path}:{n}')
