"""The records stages exchange, and reading them back typed.

`Question` (a task's question, gold only where a stage may read it),
`SampledPath` (one sampled chain of thought), `SelfGenExample` (one training
example of the self-generated mixture), `PreferencePair` (one question's
most- and least-voted paths, the preference learner's data). They are
written with
`lmsi.runtime.fileio.write_jsonl` and read back with `read_jsonl`, which
names the file, line and field of any bad record.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator
from typing import Any, TypeVar

from lmsi.runtime import fileio

T = TypeVar('T')

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferencePair:
  """One self-generated preference pair (stage 4 output, `learner=
  'preference'`): a path of the most-voted answer is `chosen`, a path of
  the least-voted one `rejected`; `weight` = (votes_chosen -
  votes_rejected) / samples. No gold field."""

  task: str
  id: str
  inputs: str
  chosen: str
  rejected: str
  chosen_sample: int
  rejected_sample: int
  votes_chosen: int
  votes_rejected: int
  samples: int
  weight: float


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
  raw = fileio.parse_object(line, where)
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


def read_jsonl(path: str, cls: type[T], *, require_marker: bool = True
               ) -> Iterator[T]:
  """Reads records written by `fileio.write_jsonl`, checked against their
  marker (`fileio.read_lines`).

  Raises:
    FileNotFoundError: if the file (or its marker) is missing.
    ValueError: naming file:line for a malformed or truncated record.
  """
  for where, line in fileio.read_lines(path, require_marker=require_marker):
    yield from_json(cls, line, where)
