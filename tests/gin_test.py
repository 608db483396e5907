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
