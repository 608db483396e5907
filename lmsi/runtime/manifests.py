"""Stage manifests: what a stage read, which code ran it, what it chose.

Each stage writes a `*_manifest.json` next to its outputs, built by
`stage_manifest(inputs, **fields)`: every input with its sha256, the git
revision of this code, the gin config of the run (when a binary parsed one),
and the stage's own fields (counts, and the choices the paper leaves open).
A file's digest is of its bytes; a directory's (an orbax checkpoint, say) is
of its sorted listing of relative file names and sizes, which is cheap and
changes whenever a file is added, removed or rewritten to another size.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from typing import Any

from etils import epath
import gin

from lmsi.runtime import fileio

file_sha256 = fileio.file_sha256  # the sha256 (hex) of a file's bytes


def tree_sha256(path: str) -> str:
  """The sha256 (hex) of a directory's sorted "relative/name size" lines."""
  lines = []
  for root, _, names in epath.Path(path).walk():
    for name in names:
      full = os.path.join(root, name)
      lines.append(f'{os.path.relpath(full, path)} {fileio.size(full)}\n')
  return hashlib.sha256(''.join(sorted(lines)).encode('utf-8')).hexdigest()


def describe_input(path: str) -> dict[str, Any]:
  """{path, kind, sha256[, bytes]} of an input file or directory.

  Raises:
    FileNotFoundError: if `path` does not exist.
  """
  where = path if fileio.is_remote(path) else os.path.abspath(path)
  if epath.Path(path).is_dir():
    return {'path': where, 'kind': 'directory', 'sha256': tree_sha256(path)}
  if not epath.Path(path).exists():
    raise FileNotFoundError(f'manifest input {path} does not exist')
  return {'path': where, 'kind': 'file',
          'bytes': fileio.size(path), 'sha256': file_sha256(path)}


def git_revision() -> str:
  """HEAD of the checkout this code runs from, '+dirty' if edited; else
  'unknown' (no git, or an installed package)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = lambda *args: subprocess.run(
        ['git', *args], capture_output=True, text=True, cwd=here,
        check=True, timeout=30).stdout.strip()
    revision = run('rev-parse', 'HEAD')
    dirty = run('status', '--porcelain', '--untracked-files=no')
  except (OSError, subprocess.SubprocessError):
    return 'unknown'
  return revision + ('+dirty' if dirty else '')


def gin_config() -> str | None:
  """The run's gin config: operative values if any ran yet, else as parsed;
  None when no gin config was parsed (a library call)."""
  parsed = gin.config_str()
  if not parsed.strip():
    return None
  operative = gin.operative_config_str()
  return operative if '=' in operative else parsed


def stage_manifest(inputs: Sequence[str], **fields: Any) -> dict[str, Any]:
  """A JSON-ready manifest: inputs with digests, git revision, gin, `fields`.

  Args:
    inputs: the files and directories the stage read.
    **fields: stage entries (counts, choices, checkpoint, ...); they may not
      reuse the keys 'inputs', 'git_revision' or 'gin_config'.

  Raises:
    FileNotFoundError: if an input does not exist.
  """
  manifest = {'inputs': [describe_input(p) for p in inputs],
              'git_revision': git_revision(), 'gin_config': gin_config()}
  clash = sorted(set(manifest) & set(fields))
  if clash:
    raise ValueError(f'manifest fields {clash} are reserved')
  return {**manifest, **fields}
