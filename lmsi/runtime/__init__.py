"""What every stage runs on: atomic files with completion markers, gin
flags and commands, joining a multi-host run, manifests (digests, git
revision, gin config).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # fileio
  from lmsi.runtime.fileio import (
      write_jsonl, write_json, write_text_atomic, is_complete, MARKER)
  # gin_flags
  from lmsi.runtime.gin_flags import main, parse, parse_args, resolve
  # distributed
  from lmsi.runtime.distributed import (
      initialize, process_count, process_index, barrier)
  # manifests
  from lmsi.runtime.manifests import (
      file_sha256,
      tree_sha256,
      describe_input,
      git_revision,
      stage_manifest)

__all__ = [
    'write_jsonl',
    'write_json',
    'write_text_atomic',
    'is_complete',
    'MARKER',
    'main',
    'parse',
    'parse_args',
    'resolve',
    'initialize',
    'process_count',
    'process_index',
    'barrier',
    'file_sha256',
    'tree_sha256',
    'describe_input',
    'git_revision',
    'stage_manifest',
]
