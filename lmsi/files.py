"""File operations on local paths and on `gs://` (any URL tf.io.gfile knows).

Every stage reads and writes through these functions, so an output directory
may be `gs://bucket/...` on a TPU pod and a local folder on a laptop. A path
with a scheme (`gs://`, `ram://`, ...) goes to `tf.io.gfile`, imported only
then; a local path uses `os` and `open`, so local runs never import
TensorFlow for their files.

Object stores have no atomic rename: on GCS, `rename` is a copy then a
delete. Each object is still written whole or not at all, and a stage's
`.COMPLETED` marker (see `records.py`) is written after its data, so a reader
that trusts only the marker never sees a half-moved file.

A local write that fails for want of space or permission is restated by
`write_error` to name the output directory and the cause.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import glob as glob_lib
import os
import re
from collections.abc import Iterator
from typing import IO

_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')
# Write errors that no retry fixes: the run must stop and say where and why.
_WRITE_ERRORS = {errno.ENOSPC: 'disk full', errno.EDQUOT: 'disk quota exceeded',
                 errno.EACCES: 'permission denied',
                 errno.EPERM: 'operation not permitted',
                 errno.EROFS: 'read-only file system'}


def is_remote(path: str) -> bool:
  """True for a URL such as `gs://b/x` (handled by tf.io.gfile)."""
  return bool(_SCHEME.match(path))


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def open(path: str, mode: str = 'r') -> IO:  # pylint: disable=redefined-builtin
  """Opens `path`; text modes read and write UTF-8."""
  if is_remote(path):
    return _gfile().GFile(path, mode)
  if 'b' in mode:
    return builtins.open(path, mode)
  return builtins.open(path, mode, encoding='utf-8')


def exists(path: str) -> bool:
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def size(path: str) -> int:
  """The size of file `path` in bytes."""
  if is_remote(path):
    return int(_gfile().stat(path).length)
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
  """Creates `path` and its parents; an existing directory is fine.

  Raises:
    OSError: naming `path` if it cannot be created (see `write_error`).
  """
  if is_remote(path):
    _gfile().makedirs(path)
    return
  with naming_write_errors(path.rstrip('/')):
    os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
  """Names in directory `path` (no trailing slashes), sorted."""
  if is_remote(path):
    return sorted(n.rstrip('/') for n in _gfile().listdir(path))
  return sorted(os.listdir(path))


def walk(path: str) -> Iterator[tuple[str, list[str], list[str]]]:
  """(directory, subdirectory names, file names) under `path`, as `os.walk`."""
  if is_remote(path):
    return iter(_gfile().walk(path))
  return os.walk(path)


def glob(pattern: str) -> list[str]:
  """Paths matching `pattern` (`*`, `?`, `[...]` within one level), sorted."""
  if is_remote(pattern):
    return sorted(_gfile().glob(pattern))
  return sorted(glob_lib.glob(pattern))


def remove(path: str) -> None:
  """Deletes the file `path`.

  Raises:
    FileNotFoundError: if it does not exist.
  """
  if not is_remote(path):
    os.remove(path)
  elif not exists(path):
    raise FileNotFoundError(path)
  else:
    _gfile().remove(path)


def rename(src: str, dst: str) -> None:
  """Moves `src` to `dst`, replacing `dst`.

  Atomic on a local filesystem (`os.replace`); a copy then a delete on GCS.
  """
  if is_remote(src) or is_remote(dst):
    _gfile().rename(src, dst, overwrite=True)
  else:
    os.replace(src, dst)


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
