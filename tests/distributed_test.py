"""Joining a multi-process run: env parsing, config.gin on process 0, and a
real 2-process run through launch/local.py.
"""

import json
import os
import subprocess
import sys
import textwrap

from etils import epath
import gin
import pytest

from lmsi.runtime import distributed
from lmsi.runtime import gin_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = (distributed.COORDINATOR_ADDRESS, distributed.NUM_PROCESSES,
       distributed.PROCESS_ID, distributed.DISTRIBUTED)


@pytest.fixture
def calls(monkeypatch):
  """Records jax.distributed.initialize calls instead of making them."""
  made = []
  monkeypatch.setattr(distributed.jax.distributed, 'initialize',
                      lambda **kw: made.append(kw))
  monkeypatch.setattr(distributed, 'initialized', False)
  for name in ENV:
    monkeypatch.delenv(name, raising=False)
  return made


def test_single_process_initializes_nothing(calls):
  distributed.initialize()
  assert calls == []
  assert not distributed.initialized


def test_env_membership_once(calls, monkeypatch):
  monkeypatch.setenv(distributed.COORDINATOR_ADDRESS, 'localhost:1234')
  monkeypatch.setenv(distributed.NUM_PROCESSES, '4')
  monkeypatch.setenv(distributed.PROCESS_ID, '3')
  distributed.initialize()
  distributed.initialize()  # Idempotent.
  assert calls == [dict(coordinator_address='localhost:1234',
                        num_processes=4, process_id=3)]


def test_arguments_win_over_env(calls, monkeypatch):
  monkeypatch.setenv(distributed.COORDINATOR_ADDRESS, 'elsewhere:1')
  distributed.initialize('h:2', num_processes=2, process_id=0)
  assert calls == [dict(coordinator_address='h:2', num_processes=2,
                        process_id=0)]


def test_multihost_run_refuses_a_local_output_dir(monkeypatch):
  """Several processes, each with its own disk: a local output path would
  scatter the run's pieces, so it is refused unless the disk is shared."""
  monkeypatch.setattr(distributed, 'process_count', lambda: 4)
  monkeypatch.delenv(gin_flags.SHARED_DISK, raising=False)
  with pytest.raises(ValueError, match="model_dir='runs/m' is a local path"):
    gin_flags.check_shared_output('runs/m', 'model_dir')
  gin_flags.check_shared_output('gs://bucket/m', 'model_dir')
  monkeypatch.setenv(gin_flags.SHARED_DISK, '1')
  gin_flags.check_shared_output('runs/m', 'model_dir')
  monkeypatch.setattr(distributed, 'process_count', lambda: 1)
  monkeypatch.delenv(gin_flags.SHARED_DISK)
  gin_flags.check_shared_output('runs/m', 'model_dir')


def test_partial_membership_is_an_error(calls, monkeypatch):
  monkeypatch.setenv(distributed.NUM_PROCESSES, '2')
  with pytest.raises(ValueError, match='LMSI_PROCESS_ID'):
    distributed.initialize()
  assert calls == []


def test_auto_lets_jax_detect_the_pod(calls, monkeypatch):
  monkeypatch.setenv(distributed.DISTRIBUTED, 'auto')
  distributed.initialize()
  assert calls == [{}]


def test_single_process_helpers():
  assert distributed.process_index() == 0
  assert distributed.process_count() == 1
  distributed.barrier('no-op on one process')


def _tiny_binary(tmp_path, monkeypatch):
  """A gin-configured module `tinybin.run(output_dir=...)` in tmp_path."""
  (tmp_path / 'tinybin.py').write_text(textwrap.dedent('''
      import jax

      def run(*, output_dir: str, value: int = 1) -> int:
        print(f'process {jax.process_index()} of {jax.process_count()}')
        return value
  '''))
  (tmp_path / 'tiny.gin').write_text(textwrap.dedent('''
      from __gin__ import dynamic_registration
      import tinybin
      OUT = %gin.REQUIRED
      tinybin.run.output_dir = %OUT
      tinybin.run.value = 7
  '''))
  monkeypatch.syspath_prepend(str(tmp_path))
  return [f'--gin_file={tmp_path / "tiny.gin"}']


@pytest.mark.parametrize('index, writes', [(0, True), (1, False)])
def test_only_process_zero_writes_config(tmp_path, monkeypatch, index,
                                         writes):
  argv = _tiny_binary(tmp_path, monkeypatch)
  monkeypatch.setattr(distributed, 'process_index', lambda: index)
  out = tmp_path / 'out'
  try:
    assert gin_flags.main('tinybin', 'run', output_dir_arg='output_dir',
                          argv=[*argv, f'--gin.OUT="{out}"']) == 7
  finally:
    gin.clear_config()
  assert (out / 'config.gin').exists() is writes


def test_config_goes_to_a_url_output_dir(tmp_path, monkeypatch, memory_gcs):
  argv = _tiny_binary(tmp_path, monkeypatch)
  out = f'{memory_gcs}/out'
  try:
    gin_flags.main('tinybin', 'run', output_dir_arg='output_dir',
                   argv=[*argv, f'--gin.OUT="{out}"'])
  finally:
    gin.clear_config()
  with epath.Path(out, 'config.gin').open() as f:
    assert 'tinybin.run.value = 7' in f.read()


def _local(args, timeout=180):
  env = {k: v for k, v in os.environ.items() if k not in ENV}
  return subprocess.run(
      [sys.executable, 'launch/local.py', *args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=timeout, check=False)


def test_two_local_processes_form_one_jax_run():
  p = _local(['--num_processes=2', '--devices_per_process=3', '--',
              'python', '-m', 'lmsi.runtime.distributed'])
  assert p.returncode == 0, p.stdout + p.stderr
  reports = {}
  for line in p.stdout.splitlines():
    prefix, _, rest = line.partition(' ')
    if rest.startswith('{'):
      # raw_decode: a native library's write can land after the report on
      # the same line (seen once in CI: "Extra data" at the line's end).
      reports[prefix] = json.JSONDecoder().raw_decode(rest)[0]
  assert reports == {
      f'[p{i}]': {'process_index': i, 'process_count': 2,
                  'local_device_count': 3, 'device_count': 6,
                  'gathered': [0, 1]}
      for i in range(2)}


def test_gin_binary_under_the_local_launcher(tmp_path, monkeypatch):
  argv = _tiny_binary(tmp_path, monkeypatch)
  out = tmp_path / 'out'
  code = ('from lmsi import gin_flags; '
          "gin_flags.main('tinybin', 'run', output_dir_arg='output_dir')")
  env_path = f'{tmp_path}:{REPO}'
  p = _local(['--num_processes=2', '--devices_per_process=2', '--', 'env',
              f'PYTHONPATH={env_path}', sys.executable, '-c', code, *argv,
              f'--gin.OUT="{out}"'])
  assert p.returncode == 0, p.stdout + p.stderr
  assert '[p0] process 0 of 2' in p.stdout
  assert '[p1] process 1 of 2' in p.stdout
  assert 'tinybin.run.value = 7' in (out / 'config.gin').read_text()


def test_one_failing_process_stops_the_rest():
  # Process 1 fails at once; process 0 would sleep for a minute.
  code = ('import os, sys, time\n'
          "if os.environ['LMSI_PROCESS_ID'] == '1': sys.exit(3)\n"
          'print("waiting", flush=True); time.sleep(60)\n')
  p = _local(['--num_processes=2', '--', 'python', '-c', code], timeout=40)
  assert p.returncode == 3
  assert 'a process exited with 3; stopped the rest' in p.stdout
