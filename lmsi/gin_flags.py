"""`--gin_file` / `--gin.X=...` parsing for lmsi binaries (T5X conventions).

`main('lmsi.train', 'train', output_dir_arg='model_dir')` joins a
multi-process run if the launcher set one up (`lmsi.distributed`), parses the
flags, binds them, calls the gin-configured function and writes the config to
`<output dir>/config.gin` (process 0 only). Library functions stay gin-free:
gin files import `lmsi.*` with dynamic registration and bind by module path.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import tokenize
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


def _unclosed_bracket(path: str) -> int | None:
  """The line of the innermost bracket still open where `path` stops
  tokenizing (gin's TokenError only gives the end of the file)."""
  opened = []
  try:
    with open(path, encoding='utf-8') as f:
      for tok in tokenize.generate_tokens(f.readline):
        if tok.type == tokenize.OP and tok.string in '([{':
          opened.append(tok.start[0])
        elif tok.type == tokenize.OP and tok.string in ')]}' and opened:
          opened.pop()
  except tokenize.TokenError:
    return opened[-1] if opened else None
  except (OSError, SyntaxError):
    return None
  return None


def _located(e: Exception, where: str) -> Exception:
  """`e` with `where` (a gin file or binding) prepended, unless gin already
  named the file and line (its messages then hold 'In file')."""
  text = str(e)
  if 'In file' in text or 'In bindings string' in text or where in text:
    return e
  if isinstance(e, tokenize.TokenError):  # (message, (line, column))
    msg, (line, _) = e.args
    if os.path.isfile(where):
      where = f'{where}:{_unclosed_bracket(where) or line}'
    return ValueError(f'{where}: gin syntax error: {msg} (an unclosed '
                      'bracket or quote?)')
  return ValueError(f'{where}: {type(e).__name__}: {text}')


def _first_line(pattern: str, paths: Sequence[str]) -> str:
  """'file:line' of the first match of `pattern` in the top-level gin files,
  else the files' list (the match is then in an included file)."""
  use = re.compile(pattern)
  for path in paths:
    if os.path.isfile(path):
      with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
          if use.search(line.split('#', 1)[0]):
            return f'{path}:{n}'
  return f'{list(paths)} (or a file they include)'


def _warn_unused_macros(argv: Sequence[str]) -> None:
  """Warns about `--gin.NAME=...` macros no gin file refers to (a typo?).

  A warning, not an error: launchers pass shared flags to every stage.
  """
  config = gin.config_str()
  used = set(re.findall(r'%(?:[\w.]+/)*(\w+)', config))
  for arg in argv:
    name = arg[len('--gin.'):].partition('=')[0].strip()
    if arg.startswith('--gin.') and '.' not in name and name not in used:
      close = difflib.get_close_matches(name, sorted(used), n=3)
      print(f'gin: warning: {arg} sets macro {name}, which no gin file uses'
            + (f'; did you mean {close}?' if close else ''), file=sys.stderr)


def parse(argv: Sequence[str]) -> None:
  """Parses gin files and bindings; errors name the file (or flag) and line.

  Raises:
    ValueError/OSError/...: gin's error, prefixed with the file or binding
      it came from when gin's own message does not name it.
  """
  files, bindings, paths = parse_args(argv)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for p in [repo, *paths]:
    gin.add_config_file_search_path(p)
  # One file at a time, as gin.parse_config_files_and_bindings does, so an
  # error gin reports without a location still names its file.
  for path in files:
    try:
      gin.parse_config_file(path)
    except Exception as e:  # pylint: disable=broad-except  # re-raised
      raise _located(e, path) from e
  for binding in bindings:
    try:
      gin.parse_config(binding)
    except Exception as e:  # pylint: disable=broad-except  # re-raised
      raise _located(e, f'gin binding {binding!r}') from e
  try:
    gin.finalize()
  except ValueError as e:
    unset = re.search(r"No bindings specified for '(\w+)/gin.macro'", str(e))
    required = re.search(r'^(\w+)/macro.value set to `%gin.REQUIRED`', str(e))
    if unset:
      name = unset.group(1)
      where = _first_line(rf'%(?:[\w.]+/)*{name}\b', files)
      raise ValueError(f'{where}: gin macro %{name} is used but never set; '
                       f'set it in a gin file or with --gin.{name}=...') from e
    if required:
      name = required.group(1)
      where = _first_line(rf'^\s*{name}\s*=', files)
      raise ValueError(f'{where}: gin macro {name} is REQUIRED; set it with '
                       f'--gin.{name}=... or in an experiment file') from e
    raise
  _warn_unused_macros(argv)


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
