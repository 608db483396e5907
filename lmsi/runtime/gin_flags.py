"""`--gin_file` / `--gin.X=...` parsing for lmsi binaries (T5X conventions).

`main('lmsi.train', 'train', output_dir_arg='model_dir')` joins a
multi-process run if the launcher set one up (`lmsi.runtime.distributed`),
parses the flags, binds them, calls the gin-configured function and writes the
config to `<output dir>/config.gin` (process 0 only). Library functions stay
gin-free: gin files import `lmsi.*` with dynamic registration and bind by module
path.

The flags are absl flags, as in T5X: `--gin_file` and `--gin_bindings`
(repeatable), `--gin_search_paths` (comma-separated, repeatable), and
`--gin.NAME=VALUE`, which T5X's launcher convention turns into the binding
`NAME = VALUE`. Files and bindings go to `gin.parse_config_files_and_bindings`.
Errors name the file and line (or the flag): gin's binding errors already
do; syntax errors and the errors `gin.finalize` reports without a place (an
unset or REQUIRED macro) are located with gin's own parser
(`gin.config_parser`, whose statements carry their file and line).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import os
import sys
import tokenize
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from absl import flags
from absl import logging as absl_logging
import gin
from gin import config_parser

from lmsi.runtime import distributed
from lmsi.runtime import fileio

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # lmsi/runtime/gin_flags.py -> the repo
_GIN_DOT = '--gin.'
_SEARCH_PATHS: list[str] = []  # added to gin (its list outlives clear_config)
# Where lmsi's own log records come from (the quiet filter keeps them).
_OWN_CODE = tuple(os.path.join(_REPO, d, '') for d in ('lmsi', 'tasks',
                                                      'launch'))
_LOG_FORMAT = '%(levelname).1s%(asctime)s %(message)s'  # I0102 12:00:00 msg


def _flag_values() -> flags.FlagValues:
  """A fresh set of the gin flags (not absl's global FLAGS: every parse
  starts clean, and binaries' own flags never collide with them)."""
  fv = flags.FlagValues()
  flags.DEFINE_multi_string('gin_file', [], 'Gin files, in order.',
                            flag_values=fv)
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, after files.',
                            flag_values=fv)
  flags.DEFINE_multi_string('gin_search_paths', [], 'Comma-separated paths '
                            'searched for gin files.', flag_values=fv)
  return fv


_VALUED = ('gin_file', 'gin_bindings', 'gin_search_paths')


def parse_args(argv: Sequence[str]) -> tuple[list[str], list[str],
                                             list[str]]:
  """Splits argv into (gin files, gin bindings, gin search paths).

  `--gin.NAME=VALUE` becomes the binding `NAME = VALUE`; `--gin_bindings=B`
  is taken as is, like T5X; bindings keep their command-line order.

  Raises:
    ValueError: naming any flag or argument it does not know.
  """
  args = []
  for i, arg in enumerate(argv):
    if arg.startswith(_GIN_DOT):
      name, _, value = arg[len(_GIN_DOT):].partition('=')
      if not name or not value:
        raise ValueError(f'flag {arg!r}: expected --gin.NAME=VALUE')
      arg = f'--gin_bindings={name} = {value}'
    elif (arg.lstrip('-') in _VALUED and arg.startswith('-') and
          i + 1 < len(argv) and argv[i + 1].startswith('-')):
      # absl would take the next flag as this one's value (found by
      # tests/fuzz_test.py: a binding became a gin file name).
      raise ValueError(f'flag {arg!r} is missing its value: the next '
                       f'argument {argv[i + 1]!r} is a flag; expected '
                       f'{arg}=VALUE')
    args.append(arg)
  fv = _flag_values()
  expected = ('expected --gin_file=..., --gin.NAME=VALUE, --gin_bindings=... '
              'or --gin_search_paths=...')
  try:
    rest = fv(['lmsi', *args])[1:]
  except flags.UnrecognizedFlagError as e:
    raise ValueError(f'unknown flag {e.flagvalue!r}; {expected}') from None
  except flags.Error as e:
    raise ValueError(f'{e}; {expected}') from None
  if rest:
    raise ValueError(f'unknown flag {rest[0]!r}; {expected}')
  paths = [p for arg in fv.gin_search_paths for p in arg.split(',') if p]
  return list(fv.gin_file), list(fv.gin_bindings), paths


@dataclasses.dataclass(frozen=True)
class _Macro:
  name: str


class _Delegate(config_parser.ParserDelegate):
  """Parses values without resolving them: `%NAME` -> `_Macro(NAME)`."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return None

  def macro(self, macro_name):
    return _Macro(macro_name)


@dataclasses.dataclass(frozen=True)
class _Statement:
  """A gin binding, where it was written and the macros its value uses."""
  where: str  # 'file:line', or "gin binding '...'"
  key: tuple[str, str, str]  # (scope, selector, arg_name); '' arg: a macro
  value: Any


def _macros(value: Any) -> Iterator[str]:
  if isinstance(value, _Macro):
    yield value.name
  elif isinstance(value, dict):
    for v in value.values():
      yield from _macros(v)
  elif isinstance(value, (list, tuple, set)):
    for v in value:
      yield from _macros(v)


def _unclosed_bracket(path: str) -> int | None:
  """The line of the innermost bracket still open where `path` stops
  tokenizing (a TokenError only gives the end of the file)."""
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


def _find(path: str, search: Sequence[str]) -> str | None:
  """`path` as gin's parse_config_file finds it (search paths in order)."""
  for prefix in [''] if os.path.isabs(path) else search:
    if os.path.isfile(os.path.join(prefix, path)):
      return os.path.join(prefix, path)
  return None  # Gin reports it (or reads it through a registered reader).


def _statements(source: str, is_file: bool,
                search: Sequence[str]) -> Iterator[_Statement]:
  """The bindings of a gin file (includes followed) or a binding string.

  Raises:
    ValueError: for a syntax error, naming the file and line or the binding.
  """
  path = _find(source, search) if is_file else None
  if is_file and path is None:
    return
  where = path if is_file else f'gin binding {source!r}'
  try:
    if is_file:
      with open(path, encoding='utf-8') as f:
        parsed = list(config_parser.ConfigParser(f, _Delegate()))
    else:
      parsed = list(config_parser.ConfigParser(source, _Delegate()))
  except SyntaxError as e:  # gin's: (message, (file, line, column, text))
    at = f'{where}:{e.lineno}' if is_file else where
    raise ValueError(f'{at}: gin syntax error: {e.msg}') from None
  except tokenize.TokenError as e:  # (message, (line, column))
    msg, (line, _) = e.args
    at = f'{where}:{_unclosed_bracket(path) or line}' if is_file else where
    raise ValueError(f'{at}: gin syntax error: {msg} (an unclosed bracket '
                     'or quote?)') from None
  for s in parsed:
    if isinstance(s, config_parser.IncludeStatement):
      yield from _statements(s.filename, True, search)
    elif isinstance(s, config_parser.BindingStatement):
      at = f'{where}:{s.location.line_num}' if is_file else where
      yield _Statement(at, (s.scope, s.selector, s.arg_name), s.value)


def _is_set(macro: str) -> bool:
  try:
    gin.query_parameter(f'%{macro}')
  except ValueError:
    return False
  return True


def _finalize_error(statements: Sequence[_Statement]) -> ValueError | None:
  """Where a binding in effect uses an unset macro or is still REQUIRED
  (the problems `gin.finalize` reports without a file or line); None if
  none does."""
  in_effect = {s.key: s for s in statements}.values()
  for s in in_effect:
    for name in _macros(s.value):
      if '.' not in name and not _is_set(name):  # dotted: a gin constant
        return ValueError(f'{s.where}: gin macro %{name} is used but never '
                          f'set; set it in a gin file or with '
                          f'--gin.{name}=...')
  for s in in_effect:
    if s.value == _Macro('gin.REQUIRED'):
      scope, selector, arg = s.key
      if not arg:
        return ValueError(f'{s.where}: gin macro {selector} is REQUIRED; set '
                          f'it with --gin.{selector}=... or in an experiment '
                          'file')
      return ValueError(f'{s.where}: gin parameter {selector}.{arg} is '
                        'REQUIRED; set it in a gin file or with '
                        '--gin_bindings=...')
  return None


def _warn_unused_macros(argv: Sequence[str],
                        statements: Sequence[_Statement]) -> None:
  """Warns about `--gin.NAME=...` macros no gin binding uses (a typo?).

  A warning, not an error: launchers pass shared flags to every stage.
  """
  used = {m.rpartition('/')[2] for s in statements for m in _macros(s.value)}
  for arg in argv:
    name = arg[len(_GIN_DOT):].partition('=')[0].strip()
    if arg.startswith(_GIN_DOT) and '.' not in name and name not in used:
      close = difflib.get_close_matches(name, sorted(used), n=3)
      absl_logging.warning(
          'gin: warning: %s sets macro %s, which no gin file uses%s', arg,
          name, f'; did you mean {close}?' if close else '')


def parse(argv: Sequence[str]) -> None:
  """Parses gin files and bindings; errors name the file (or flag) and line.

  Raises:
    ValueError: for a bad flag, a syntax error or an unset/REQUIRED macro,
      naming the file and line or the binding; gin's own errors (which name
      the file and line) otherwise.
  """
  gin_files, bindings, paths = parse_args(argv)
  for p in [_REPO, *paths]:
    if p not in _SEARCH_PATHS:
      gin.add_config_file_search_path(p)
      _SEARCH_PATHS.append(p)
  search = ['', _REPO, *paths]
  statements = [s for f in gin_files for s in _statements(f, True, search)]
  statements += [s for b in bindings for s in _statements(b, False, search)]
  gin.parse_config_files_and_bindings(gin_files, bindings,
                                      finalize_config=False)
  try:
    gin.finalize()
  except ValueError as e:
    located = _finalize_error(statements)
    if located is None:
      raise
    raise located from e
  _warn_unused_macros(argv, statements)


def resolve(value):
  """Evaluates a queried gin value that is a macro or `@reference()`."""
  while isinstance(value, gin.config.ConfigurableReference):
    value = value.scoped_configurable_fn()
  return value


def own_or_error(record: logging.LogRecord) -> bool:
  """The quiet filter: passes lmsi's own records (logged from lmsi/, tasks/
  or launch/) and any library's errors; drops the libraries' info and
  warnings."""
  return (record.levelno >= logging.ERROR
          or record.pathname.startswith(_OWN_CODE))


def quiet_libraries() -> None:
  """Sends absl logging (lmsi's status lines, INFO and up) to stderr and
  keeps a run's output to them, the progress bars and the results.

  Info and warnings of the libraries below (TensorFlow's C++ log, absl
  logging of orbax and seqio, JAX's backend probing, deprecation warnings)
  are hidden; their errors stay visible. `LMSI_VERBOSE=1` keeps everything,
  in absl's full format.
  """
  if not flags.FLAGS.is_parsed():  # No absl flags of its own: the defaults,
    flags.FLAGS.mark_as_parsed()  # and no "logging before flag parsing".
  absl_logging.use_absl_handler()
  absl_logging.set_verbosity(absl_logging.INFO)
  if os.environ.get('LMSI_VERBOSE'):
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TF loads
  handler = absl_logging.get_absl_handler()
  handler.setFormatter(logging.Formatter(_LOG_FORMAT, '%m%d %H:%M:%S'))
  if own_or_error not in handler.filters:
    handler.addFilter(own_or_error)
  for name in ('jax._src.xla_bridge', 'orbax', 'tensorflow'):
    logging.getLogger(name).setLevel(logging.ERROR)
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  warnings.filterwarnings('ignore', category=FutureWarning)


SHARED_DISK = 'LMSI_SHARED_DISK'  # launch/local.py: one machine, one disk


def check_shared_output(output_dir: str, what: str = 'output_dir') -> None:
  """Refuses a multi-host run whose outputs go to a local path: each host
  would write its own disk, and the run's pieces would never meet.

  Raises:
    ValueError: naming the path and what to use instead, when several
      processes run, `output_dir` is local and $LMSI_SHARED_DISK (set by
      launch/local.py, whose processes share this machine's disk) is not 1.
  """
  if (distributed.process_count() > 1 and not fileio.is_remote(output_dir)
      and os.environ.get(SHARED_DISK) != '1'):
    raise ValueError(
        f'{what}={output_dir!r} is a local path but this run has '
        f'{distributed.process_count()} processes, each on its own disk: '
        'give a gs:// path (or set LMSI_SHARED_DISK=1 if every process '
        'shares this disk)')


def main(module: str, function: str, *, output_dir_arg: str,
         argv: Sequence[str] | None = None):
  """Runs `module.function` configured by the command line's gin flags.

  On a pod every process runs this; only process 0 writes `config.gin`.
  """
  argv = sys.argv[1:] if argv is None else argv
  quiet_libraries()
  distributed.initialize()  # Before anything touches JAX devices.
  fn = getattr(importlib.import_module(module), function)
  parse(argv)
  configured = gin.get_configurable(fn)
  output_dir = resolve(
      gin.query_parameter(f'{module}.{function}.{output_dir_arg}'))
  check_shared_output(output_dir, output_dir_arg)
  fileio.makedirs(output_dir)
  path = os.path.join(output_dir, 'config.gin')
  primary = distributed.process_index() == 0
  if primary:
    fileio.write_text_atomic(path, gin.config_str())  # even if the run dies
  result = configured()
  if primary:  # Then the operative values (defaults included) of what ran.
    fileio.write_text_atomic(path, gin.operative_config_str())
  return result
