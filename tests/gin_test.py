"""Gin: every run/experiment file parses and binds; flags follow T5X; bad
gin files and flags fail naming the file and line (or the flag).

`pytest -s` prints every error message (`MESSAGE ...`).
"""

import glob
import logging
import os
import subprocess
import sys

import gin
from gin import config_parser
import pytest

from lmsi.model import decoder
from lmsi.runtime import gin_flags
from tests.conftest import REPO

FILL = ['MODEL_DIR = "/tmp/m"', 'INITIAL_CHECKPOINT_PATH = "/tmp/i"',
        'SELFGEN_FILE = "/tmp/s.jsonl"', 'TASK = "lmsi_gsm8k_pool_v1"',
        'OUTPUT_DIR = "/tmp/o"', 'SAMPLES_DIR = "/tmp/samples"',
        'PAIRS_FILE = "/tmp/p.jsonl"']
TINY = os.path.join(REPO, 'gin/models/decoder_tiny.gin')
_DELEGATE = gin.config.ParserDelegate(skip_unknown=True)  # refs unresolved


def _parse_error(flags, name, error=ValueError) -> str:
  """The message of the error `gin_flags.parse(flags)` raises."""
  gin.clear_config()
  try:
    with pytest.raises(error) as e:
      gin_flags.parse(flags)
  finally:
    gin.clear_config()
  print(f'MESSAGE {name}: {type(e.value).__name__}: {e.value}')
  return str(e.value)


def test_parse_args_t5x_style():
  files, bindings, paths = gin_flags.parse_args([
      '--gin_file=a.gin', '--gin_file', 'b.gin', '--gin.SEED=3',
      '--gin.MODEL_DIR="gs://b/x"', '--gin_bindings=X = 1',
      '--gin_search_paths=/p,/q', '--gin_search_paths=/r'])
  assert files == ['a.gin', 'b.gin']
  assert bindings == ['SEED = 3', 'MODEL_DIR = "gs://b/x"', 'X = 1']
  assert paths == ['/p', '/q', '/r']


def test_a_flag_is_never_taken_as_another_flags_value():
  """Found by tests/fuzz_test.py: `-gin_file --gin.X=1` made the binding a
  gin file name; now the missing value is named."""
  with pytest.raises(ValueError, match="flag '-gin_file' is missing its "
                     "value: the next argument '--gin.X=1' is a flag"):
    gin_flags.parse_args(['-gin_file', '--gin.X=1'])


@pytest.mark.parametrize('arg, want', [
    ('--seed=3', "unknown flag '--seed=3'; expected --gin_file=..."),
    ('stray', "unknown flag 'stray'; expected --gin_file=..."),
    ('--gin.SEED', "flag '--gin.SEED': expected --gin.NAME=VALUE"),
    ('--gin_file', 'Missing value for flag --gin_file; expected'),
    ('--gin.=3', "flag '--gin.=3': expected --gin.NAME=VALUE"),
])
def test_bad_flag_is_named(arg, want):
  with pytest.raises(ValueError) as e:
    gin_flags.parse_args(['--gin_file=a.gin', arg])
  print(f'MESSAGE bad flag {arg}: {e.value}')
  assert str(e.value).startswith(want)


def _model_file(path: str) -> str:
  """The model file `path` includes, directly or through an included
  experiment file (run files are parsed after TINY)."""
  with open(path, encoding='utf-8') as f:
    for s in config_parser.ConfigParser(f, _DELEGATE):
      if isinstance(s, config_parser.IncludeStatement):
        if '/models/' in s.filename:
          return os.path.join(REPO, s.filename)
        if '/experiments/' in s.filename:
          return _model_file(os.path.join(REPO, s.filename))
  return TINY


def _config_block(model_file: str) -> dict:
  """The `decoder.DecoderConfig:` values written in `model_file`."""
  with open(model_file, encoding='utf-8') as f:
    return {s.arg_name: s.value
            for s in config_parser.ConfigParser(f, _DELEGATE)
            if isinstance(s, config_parser.BindingStatement)
            and s.selector == 'decoder.DecoderConfig'}


@pytest.mark.parametrize('path', sorted(
    glob.glob(os.path.join(REPO, 'gin/experiments/*.gin'))
    + glob.glob(os.path.join(REPO, 'gin/runs/*.gin'))))
def test_gin_file_parses(path):
  """MODEL_CONFIG is exactly the model file's block over the defaults."""
  gin.clear_config()
  try:
    files = [path] if '/runs/' not in path else [TINY, path]
    gin_flags.parse([f'--gin_file={f}' for f in files]
                    + [f'--gin_bindings={b}' for b in FILL])
    cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
  finally:
    gin.clear_config()
  block = _config_block(_model_file(path))
  assert len(block) >= 5, block
  assert cfg == decoder.DecoderConfig(**block)
  assert cfg != decoder.DecoderConfig()


@pytest.mark.parametrize('body, line, want', [
    ('train.train.no_such_arg = 3', 4, "have a parameter named 'no_such_arg'"),
    ('train.train.batch_size = (3', 4, 'gin syntax error'),
    ('train.train.batch_size = 3 3', 4, 'gin syntax error: Expected newline'),
    ('train.train.batch_size = %NO_SUCH_MACRO', 4, '%NO_SUCH_MACRO is used '
     'but never set'),
    ('train.train.batch_size = %gin.REQUIRED', 4, 'gin parameter '
     'train.train.batch_size is REQUIRED'),
], ids=['unknown_parameter', 'unclosed_bracket', 'bad_syntax', 'unset_macro',
        'required_parameter'])
def test_bad_gin_binding_names_file_and_line(tmp_path, body, line, want):
  bad = tmp_path / 'bad.gin'
  bad.write_text('from __gin__ import dynamic_registration\n'
                 f'from lmsi import train\n\n{body}\n')
  text = _parse_error([f'--gin_file={bad}'], f'bad gin binding ({want})')
  assert want in text
  assert f'{bad}:{line}' in text or f'In file "{bad}", line {line}' in text


def test_error_in_an_included_file_names_that_file(tmp_path):
  inner = tmp_path / 'inner.gin'
  inner.write_text('from __gin__ import dynamic_registration\n'
                   'from lmsi import train\n'
                   'train.train.batch_size = %NO_SUCH_MACRO\n')
  outer = tmp_path / 'outer.gin'
  outer.write_text(f'# Includes inner.\ninclude "{inner}"\n')
  text = _parse_error([f'--gin_file={outer}'], 'unset macro, included file')
  assert text.startswith(f'{inner}:3: gin macro %NO_SUCH_MACRO is used but '
                         'never set; set it in a gin file or with '
                         '--gin.NO_SUCH_MACRO=...')


def test_a_later_binding_overrides_an_unset_macro(tmp_path):
  """Only the binding in effect counts: no error once it is overridden."""
  bad = tmp_path / 'bad.gin'
  bad.write_text('from __gin__ import dynamic_registration\n'
                 'from lmsi import train\n'
                 'train.train.batch_size = %NO_SUCH_MACRO\n')
  gin.clear_config()
  try:
    gin_flags.parse([f'--gin_file={bad}',
                     '--gin_bindings=lmsi.train.train.batch_size = 4'])
    assert gin.query_parameter('lmsi.train.train.batch_size') == 4
  finally:
    gin.clear_config()


def test_gin_flag_syntax_error_names_the_flag():
  text = _parse_error(['--gin.TRAIN_STEPS=(3'], 'bad --gin flag')
  assert text.startswith("gin binding 'TRAIN_STEPS = (3': gin syntax error")


def test_gin_flag_unknown_configurable_shows_the_binding():
  text = _parse_error(['--gin.no_such.thing=3'], 'unknown --gin binding')
  assert "No configurable matching 'no_such'" in text
  assert 'In bindings string line 1\n    no_such.thing = 3' in text


def test_gin_required_macro_names_file_and_line():
  text = _parse_error(['--gin_file=gin/models/decoder_tiny.gin',
                       '--gin_file=gin/runs/finetune.gin',
                       '--gin.INITIAL_CHECKPOINT_PATH="i"'],
                      'REQUIRED gin macro unset')
  want = [n for n, l in enumerate(open('gin/runs/finetune.gin'), 1)
          if l.startswith('SELFGEN_FILE = %gin.REQUIRED')]
  assert text.startswith(f'gin/runs/finetune.gin:{want[0]}: gin macro '
                         'SELFGEN_FILE is REQUIRED; set it with '
                         '--gin.SELFGEN_FILE=...')


def test_gin_flag_macro_typo_warns(caplog):
  gin.clear_config()
  try:
    with caplog.at_level(logging.WARNING, logger='absl'):
      gin_flags.parse(['--gin_file=gin/models/decoder_tiny.gin',
                       '--gin_file=gin/runs/finetune.gin',
                       '--gin.SELFGEN_FILE="s.jsonl"', '--gin.MODEL_DIR="m"',
                       '--gin.INITIAL_CHECKPOINT_PATH="i"',
                       '--gin.TRAIN_STEP=5'])
  finally:
    gin.clear_config()
  assert [r.levelno for r in caplog.records] == [logging.WARNING]
  err = caplog.text
  print(f'MESSAGE --gin macro typo (a warning): {err.strip()}')
  assert ("--gin.TRAIN_STEP=5 sets macro TRAIN_STEP, which no gin file uses; "
          "did you mean ['TRAIN_STEPS'") in err
  assert 'SELFGEN_FILE' not in err and 'MODEL_DIR' not in err


ROUND_FLAGS = [
    '--gin_file=gin/models/smollm2_135m.gin', '--gin.TASK="lmsi_gsm8k_pool_v1"',
    '--gin.PRETRAINED_DIR="gs://b/smollm2"',
    '--sample.gin.OUTPUT_DIR="gs://b/r1/samples"',
    '--aggregate.gin.SAMPLES_DIR="gs://b/r1/samples"',
    '--aggregate.gin.OUTPUT_DIR="gs://b/r1/selfgen"',
    '--train.gin.SELFGEN_FILE="gs://b/r1/selfgen/selfgen.jsonl"',
    '--train.gin.MODEL_DIR="gs://b/r1/model"',
    '--evaluate.gin.TASK="lmsi_gsm8k_v1"', '--evaluate.gin.TEMPERATURE=1.2',
    '--evaluate.gin.INITIAL_CHECKPOINT_PATH="gs://b/r1/model"',
    '--evaluate.gin.OUTPUT_DIR="gs://b/r1/eval"']


def test_readme_round_binds_every_stage(monkeypatch):
  """The README's launcher round: each stage's command line parses and
  binds what the stage needs (the run files, model file and flags agree)."""
  import importlib  # pylint: disable=g-import-not-at-top
  from launch import stages  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(REPO)
  want = {'lmsi.sample': ('sample_task', 'checkpoint_path', 'gs://b/smollm2'),
          'lmsi.aggregate': ('aggregate_task', 'samples_dir',
                             'gs://b/r1/samples'),
          'lmsi.train': ('train', 'initial_checkpoint_path', 'gs://b/smollm2'),
          'lmsi.evaluate': ('evaluate_task', 'checkpoint_path',
                            'gs://b/r1/model')}
  for [task] in stages.plan(list(stages.ROUND), ROUND_FLAGS):
    module, *flags = task.args
    fn, arg, value = want[module]
    importlib.import_module(module)
    gin.clear_config()
    try:
      gin_flags.parse(flags)
      got = gin_flags.resolve(gin.query_parameter(f'{module}.{fn}.{arg}'))
      vocab = (gin_flags.resolve(gin.query_parameter('%VOCABULARY'))
               if module != 'lmsi.aggregate' else None)
    finally:
      gin.clear_config()
    assert got == value, module
    assert vocab in (None, 'checkpoints/smollm2_135m/tokenizer.json'), module


_QUIET = """
import logging, os, sys
from absl import logging as absl_logging
from lmsi.runtime import gin_flags
gin_flags.quiet_libraries()
own = os.path.join(gin_flags._REPO, 'lmsi', 'stage_x.py')
exec(compile("absl_logging.info('sample: own status line')", own, 'exec'))
absl_logging.info('library info')  # from <string>: not lmsi's
logging.getLogger('orbax').warning('library warning')
logging.getLogger('some.lib').warning('other library warning')
logging.getLogger('some.lib').error('library error')
"""


@pytest.mark.parametrize('verbose', [False, True])
def test_quiet_run_shows_own_lines_and_errors_only(verbose):
  env = {k: v for k, v in os.environ.items() if k != 'LMSI_VERBOSE'}
  if verbose:
    env['LMSI_VERBOSE'] = '1'
  p = subprocess.run([sys.executable, '-c', _QUIET], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=120, check=True)
  err = p.stderr
  assert 'sample: own status line' in err and 'library error' in err
  assert 'Logging before flag parsing' not in err
  assert ('library info' in err) is verbose
  assert ('other library warning' in err) is verbose
  if not verbose:  # a short prefix: level, date and time, then the line
    line = next(l for l in err.splitlines() if 'own status' in l)
    assert line.startswith('I') and line.endswith(
        ' sample: own status line') and len(line) < 45, line
    assert 'library warning' not in err


def test_own_or_error_filter():
  record = lambda path, level: logging.LogRecord(
      'absl', level, path, 1, 'm', None, None)
  own = os.path.join(REPO, 'tasks', 'selfgen.py')
  lib = os.path.join(os.path.dirname(logging.__file__), 'x.py')
  assert gin_flags.own_or_error(record(own, logging.INFO))
  assert not gin_flags.own_or_error(record(lib, logging.WARNING))
  assert gin_flags.own_or_error(record(lib, logging.ERROR))
  assert not gin_flags.own_or_error(record(REPO + 'x/lmsi/a.py', logging.INFO))


@pytest.mark.parametrize('path', sorted(
    glob.glob(os.path.join(REPO, 'gin/models/*.gin'))
    + glob.glob(os.path.join(REPO, 'gin/data/*.gin'))
    + glob.glob(os.path.join(REPO, 'gin/testing/*.gin'))))
def test_model_data_and_testing_gin_files_parse(path):
  gin.clear_config()
  try:
    gin_flags.parse([f'--gin_file={path}'])
    if 'MODEL_CONFIG = @' in open(path, encoding='utf-8').read():
      cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
      assert isinstance(cfg, decoder.DecoderConfig)
  finally:
    gin.clear_config()


def test_config_gin_of_lmsi_0_1_still_parses():
  """The config.gin a `make demo` wrote before the subpackages (it imports
  the flat modules `lmsi.arithmetic`, `lmsi.decoder`) parses, and binds the
  model and the pipeline as gin/experiments/demo.gin does today."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  fields = [f.name for f in dataclasses.fields(decoder.DecoderConfig)]
  plain = ('seed', 'num_rounds', 'formats', 'min_vote_share', 'mix_seed_data',
           'finetune_from', 'base_artifact', 'task_feature_lengths')
  gin.clear_config()
  try:
    gin_flags.parse(['--gin_file=gin/experiments/demo.gin'])
    q = lambda name: gin_flags.resolve(gin.query_parameter(name))
    new_model = q('%MODEL_CONFIG')
    new = {p: q(f'pipeline.run_pipeline.{p}') for p in plain}
    gin.clear_config()
    gin_flags.parse(['--gin_file=tests/testdata/demo_config_v0.1.gin'])
    bound = {}  # fields added since 0.1 keep their defaults
    for f in fields:
      try:
        bound[f] = q(f'MODEL_CONFIG/decoder.DecoderConfig.{f}')
      except ValueError:
        pass
    assert 'vocab_size' in bound and 'rope_scaling' not in bound
    old_model = decoder.DecoderConfig(**bound)
    old = {p: q(f'pipeline.run_pipeline.{p}') for p in plain}
  finally:
    gin.clear_config()
  assert old_model == new_model
  assert old == new
