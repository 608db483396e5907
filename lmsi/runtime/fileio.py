"""Atomic, resumable files: the one writer of lmsi, its markers, JSONL.

Each stage writes `name.jsonl` through a temp file and a rename, then a
`name.jsonl.COMPLETED` marker holding the file's records, bytes and sha256;
a restarted stage skips files with a valid marker and redoes the rest.
Readers name the file and line of any bad record. Paths may be local or
`gs://...`: files go through `etils.epath` (its local backend for local
paths, so local runs never import TensorFlow; tf.io.gfile or fsspec for
URLs). On GCS the rename is a copy and a delete, and the marker, written
last, is what makes a file count. What epath does not do is here: fsync
before the rename (`sync`), and restating a full disk or an unwritable
directory to name the path and the fix (`write_error`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from absl import logging
from etils import epath

MARKER = '.COMPLETED'
_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')
# Write errors that no retry fixes: the run must stop and say where and why.
_WRITE_ERRORS = {errno.ENOSPC: 'disk full', errno.EDQUOT: 'disk quota exceeded',
                 errno.EACCES: 'permission denied',
                 errno.EPERM: 'operation not permitted',
                 errno.EROFS: 'read-only file system'}


def is_remote(path: str) -> bool:
  """True for a URL such as `gs://b/x`, False for a local path."""
  return bool(_SCHEME.match(path))


def size(path: str) -> int:
  """The size of file `path` in bytes.

  `os.path.getsize` for a local path: epath's local `stat()` also looks up
  the owner's user name, which fails for a uid with no passwd entry (a
  container run as `--user`, an NFS mount).
  """
  if is_remote(path):
    return epath.Path(path).stat().length
  return os.path.getsize(path)


def write_error(e: OSError, path: str) -> OSError:
  """`e` restated to name `path` and its directory, if the disk is full or
  the directory is not writable.

  Returns:
    A new OSError (same errno, so still e.g. a PermissionError) for the
    errors in `_WRITE_ERRORS`; `e` itself for any other.
  """
  if e.errno not in _WRITE_ERRORS:
    return e
  fix = ('free space' if e.errno in (errno.ENOSPC, errno.EDQUOT)
         else 'make it writable')
  return OSError(e.errno, f'cannot write {path}: {_WRITE_ERRORS[e.errno]} '
                 f'(in {os.path.dirname(path) or "."}); {fix} or choose '
                 'another output directory; files already there are intact')


@contextlib.contextmanager
def naming_write_errors(path: str) -> Iterator[None]:
  """Re-raises a full-disk or unwritable-directory OSError raised in the
  block as `write_error(e, path)`; any other error passes unchanged."""
  try:
    yield
  except OSError as e:
    err = write_error(e, path)
    if err is e:
      raise
    raise err from e


def makedirs(path: str) -> None:
  """Creates directory `path` and its parents; an existing one is fine.

  Raises:
    OSError: naming `path` if it cannot be created (see `write_error`).
  """
  with naming_write_errors(path.rstrip('/')):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def sync(f: IO) -> None:
  """Flushes `f` to stable storage before a rename commits it.

  A remote object is committed when it is closed, so only local files (those
  with a file descriptor) are fsync'd.
  """
  f.flush()
  try:
    fd = f.fileno()
  except (AttributeError, OSError, ValueError):  # GFile has no descriptor.
    return
  os.fsync(fd)


def to_json(record: Any) -> str:
  return json.dumps(dataclasses.asdict(record), sort_keys=True,
                    ensure_ascii=False)


def parse_object(line: str, where: str) -> dict:
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


def read_marker(path: str) -> dict | None:
  """The marker's {records, bytes, sha256}; {} for an empty legacy marker."""
  if not epath.Path(path + MARKER).exists():
    return None
  with epath.Path(path + MARKER).open() as f:
    text = f.read()
  try:
    return json.loads(text) if text.strip() else {}
  except json.JSONDecodeError:
    return None  # a torn marker is no marker


def is_complete(path: str) -> bool:
  """Whether `path` was finished: a marker whose byte count and sha256
  still match the file.

  A file truncated, grown or with a flipped byte after its marker was
  written, or a torn marker, counts as unfinished (logged, naming the
  file), so the stage that writes it redoes it.
  """
  marker = read_marker(path)
  if marker is None or not epath.Path(path).exists():
    return False
  if 'bytes' in marker and size(path) != marker['bytes']:
    return False
  if 'sha256' in marker and file_sha256(path) != marker['sha256']:
    logging.warning('%s: its bytes differ from its %s marker (sha256); '
                    'redoing it', path, MARKER)
    return False
  return True


def file_sha256(path: str) -> str:
  """The sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with epath.Path(path).open('rb') as f:
    while chunk := f.read(1 << 20):
      digest.update(chunk)
  return digest.hexdigest()


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
  with naming_write_errors(path):
    try:
      epath.Path(os.path.dirname(path) or '.').mkdir(parents=True,
                                                     exist_ok=True)
      with epath.Path(tmp).open('wb' if binary else 'w') as f:
        write(f)
        sync(f)
      epath.Path(tmp).replace(path)  # os.replace locally; GCS: copy, delete
    except OSError:
      try:
        epath.Path(tmp).unlink()
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
  lines = [to_json(r) for r in records]
  _write_marked(path, ''.join(line + '\n' for line in lines),
                records=len(lines))
  return len(lines)


def _write_marked(path: str, text: str, **counts: int) -> None:
  """Writes `text` atomically, then its `.COMPLETED` marker (`counts`,
  bytes, sha256: what `is_complete` and `read_lines` check). An old marker
  is removed first, so a rewrite killed midway reads as unfinished."""
  if epath.Path(path + MARKER).exists():
    epath.Path(path + MARKER).unlink()
  write_text_atomic(path, text)
  data = text.encode('utf-8')
  write_text_atomic(path + MARKER, json.dumps({
      **counts, 'bytes': len(data),
      'sha256': hashlib.sha256(data).hexdigest()}) + '\n')


def read_lines(path: str, *, require_marker: bool = True
               ) -> Iterator[tuple[str, str]]:
  """(where, line) of each non-empty line of a file `write_jsonl` wrote,
  after checking it against its marker; where is 'path:line'.

  Raises:
    FileNotFoundError: if the file (or its marker) is missing.
    ValueError: naming file:line for a truncated line, or the file for a
      sha256 that differs from its marker's.
  """
  marker = read_marker(path) if require_marker else {}
  if marker is None:
    raise FileNotFoundError(f'{path} has no {MARKER} marker: the stage that '
                            'writes it did not finish')
  with epath.Path(path).open('rb') as f:
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
      yield f'{path}:{n}', line


def write_json(path: str, obj: Any) -> None:
  """Writes a JSON document atomically (sorted keys, indented), then its
  `.COMPLETED` marker (bytes, sha256), as every output has one."""
  _write_marked(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_jsonl_dicts(path: str) -> Iterator[dict]:
  """Reads JSON objects from a data file (no marker needed), naming file:line.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: for a malformed line or a line that is not an object.
  """
  if not epath.Path(path).exists():
    raise FileNotFoundError(f'data file {path} does not exist')
  with epath.Path(path).open() as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        yield parse_object(line, f'{path}:{n}')
