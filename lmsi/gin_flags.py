"""`--gin_file` / `--gin.X=...` parsing for lmsi binaries (T5X conventions).

`main('lmsi.train', 'train', output_dir_arg='model_dir')` joins a
multi-process run if the launcher set one up (`lmsi.distributed`), parses the
flags, binds them, calls the gin-configured function and writes the config to
`<output dir>/config.gin` (process 0 only). Library functions stay gin-free:
gin files import `lmsi.*` with dynamic registration and bind by module path.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import gin

from lmsi import distributed
from lmsi import files
from lmsi import records


def parse_args(argv: Sequence[str]) -> tuple[list[str], list[str],
                                                   list[str]]:
  """Splits argv into (gin files, gin bindings, gin search paths).

  `--gin.NAME=VALUE` becomes the binding `NAME = VALUE`; `--gin_bindings=B`
  is taken as is, like T5X.

  Raises:
    ValueError: naming any flag it does not know.
  """
  files, bindings, paths = [], [], []
  args = list(argv)
  while args:
    arg = args.pop(0)
    if '=' not in arg and args and arg in ('--gin_file', '--gin_bindings',
                                           '--gin_search_paths'):
      arg = f'{arg}={args.pop(0)}'
    if arg.startswith('--gin_file='):
      files.append(arg.split('=', 1)[1])
    elif arg.startswith('--gin_search_paths='):
      paths.extend(p for p in arg.split('=', 1)[1].split(',') if p)
    elif arg.startswith('--gin_bindings='):
      bindings.append(arg.split('=', 1)[1])
    elif arg.startswith('--gin.'):
      name, _, value = arg[len('--gin.'):].partition('=')
      if not value:
        raise ValueError(f'flag {arg!r}: expected --gin.NAME=VALUE')
      bindings.append(f'{name} = {value}')
    else:
      raise ValueError(f'unknown flag {arg!r}; expected --gin_file=..., '
                       '--gin.NAME=VALUE, --gin_bindings=... or '
                       '--gin_search_paths=...')
  return files, bindings, paths


def parse(argv: Sequence[str]) -> None:
  """Parses gin files and bindings; errors name the file and line."""
  files, bindings, paths = parse_args(argv)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for p in [repo, *paths]:
    gin.add_config_file_search_path(p)
  gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)
  gin.finalize()


def resolve(value):
  """Evaluates a queried gin value that is a macro or `@reference()`."""
  while isinstance(value, gin.config.ConfigurableReference):
    value = value.scoped_configurable_fn()
  return value


def main(module: str, function: str, *, output_dir_arg: str,
         argv: Sequence[str] | None = None):
  """Runs `module.function` configured by the command line's gin flags.

  On a pod every process runs this; only process 0 writes `config.gin`.
  """
  argv = sys.argv[1:] if argv is None else argv
  distributed.initialize()  # Before anything touches JAX devices.
  fn = getattr(importlib.import_module(module), function)
  parse(argv)
  configured = gin.get_configurable(fn)
  output_dir = resolve(
      gin.query_parameter(f'{module}.{function}.{output_dir_arg}'))
  files.makedirs(output_dir)
  path = os.path.join(output_dir, 'config.gin')
  primary = distributed.process_index() == 0
  if primary:
    records.write_text_atomic(path, gin.config_str())  # even if the run dies
  result = configured()
  if primary:  # Then the operative values (defaults included) of what ran.
    records.write_text_atomic(path, gin.operative_config_str())
  return result
