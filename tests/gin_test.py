"""Gin: every run/experiment file parses and binds; flags follow T5X."""

import glob
import os

import gin
import pytest

from lmsi import gin_flags
from tests.conftest import REPO

FILL = ['MODEL_DIR = "/tmp/m"', 'INITIAL_CHECKPOINT_PATH = "/tmp/i"',
        'SELFGEN_FILE = "/tmp/s.jsonl"', 'TASK = "lmsi_gsm8k_pool_v1"',
        'OUTPUT_DIR = "/tmp/o"', 'SAMPLES_DIR = "/tmp/samples"']


def test_parse_args_t5x_style():
  files, bindings, paths = gin_flags.parse_args([
      '--gin_file=a.gin', '--gin_file', 'b.gin', '--gin.SEED=3',
      '--gin.MODEL_DIR="gs://b/x"', '--gin_bindings=X = 1',
      '--gin_search_paths=/p,/q'])
  assert files == ['a.gin', 'b.gin']
  assert bindings == ['SEED = 3', 'MODEL_DIR = "gs://b/x"', 'X = 1']
  assert paths == ['/p', '/q']


def test_unknown_flag_is_named():
  with pytest.raises(ValueError, match="unknown flag '--seed=3'"):
    gin_flags.parse_args(['--seed=3'])


@pytest.mark.parametrize('path', sorted(
    glob.glob(os.path.join(REPO, 'gin/experiments/*.gin'))
    + glob.glob(os.path.join(REPO, 'gin/runs/*.gin'))))
def test_gin_file_parses(path):
  gin.clear_config()
  try:
    files = [path]
    if '/runs/' in path:
      files = [os.path.join(REPO, 'gin/models/decoder_tiny.gin'), path]
    gin_flags.parse([f'--gin_file={f}' for f in files]
                    + [f'--gin_bindings={b}' for b in FILL])
    cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
    assert cfg.embed_dim > 0
  finally:
    gin.clear_config()


def test_bad_binding_names_file_and_line(tmp_path):
  bad = tmp_path / 'bad.gin'
  bad.write_text('from __gin__ import dynamic_registration\n'
                 'from lmsi import train\n\ntrain.train.no_such_arg = 3\n')
  gin.clear_config()
  try:
    with pytest.raises(Exception, match=r'(?s)no_such_arg.*bad.gin.*4'):
      gin_flags.parse([f'--gin_file={bad}'])
  finally:
    gin.clear_config()


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
