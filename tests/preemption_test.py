"""Preemption: SIGTERM in a fine-tune saves the step in flight and exits 75;
the rerun resumes there and ends bitwise where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from lmsi.checkpoints import store as checkpoints
from lmsi.runtime import preemption
from tests.conftest import REPO
from tests.conftest import write_arith_data

STEPS = 40

# A fine-tune of the tiny model with CHECKPOINT_PERIOD 1000 (so only the end
# and a preemption save), logging every step.
_FIT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {repo!r})
    import tasks.arithmetic as arith_tasks
    from lmsi.trainer import trainer
    from tests.conftest import tiny_config
    arith_tasks.register({data!r})
    trainer.train(model_config=tiny_config(),
                  mixture_or_task_name=arith_tasks.SEED_MIXTURE,
                  task_feature_lengths={{'inputs': 256, 'targets': 64}},
                  train_steps={steps}, model_dir=sys.argv[1], batch_size=8,
                  learning_rate=1e-3, optimizer='adamw', log_period=1,
                  checkpoint_period=1000)
''')


def _start(script, model_dir):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-c', script, str(model_dir)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _logged_steps(model_dir):
  path = os.path.join(model_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path, encoding='utf-8') as f:
    lines = [json.loads(line) for line in f if line.strip()]
  return max((line['step'] for line in lines), default=0)


@pytest.fixture(scope='module')
def script(tmp_path_factory):
  data = tmp_path_factory.mktemp('preempt') / 'data'
  write_arith_data(data)
  return _FIT.format(repo=REPO, data=str(data), steps=STEPS)


def _params(model_dir):
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  return checkpoints.restore_params(tiny_config(), str(model_dir))


def test_sigterm_saves_the_step_in_flight_and_resume_is_bitwise(
    script, tmp_path):
  whole = _start(script, tmp_path / 'whole')
  out, _ = whole.communicate(timeout=600)
  assert whole.returncode == 0, out[-2000:]
  cut = tmp_path / 'cut'
  proc = _start(script, cut)
  deadline = time.monotonic() + 300
  while _logged_steps(cut) < 5 and proc.poll() is None:
    assert time.monotonic() < deadline, 'the fit never reached step 5'
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == preemption.EXIT_PREEMPTED, out[-2000:]
  saved = checkpoints.manager(str(cut)).latest_step()
  # Steps redone: none. The save is the last step the loop finished.
  assert saved == _logged_steps(cut) and 5 <= saved < STEPS
  assert f'saved at step {saved}' in out
  assert not os.path.exists(cut / 'train_done.json')
  again = _start(script, cut)
  out, _ = again.communicate(timeout=600)
  assert again.returncode == 0, out[-2000:]
  for a, b in zip(jax.tree.leaves(_params(tmp_path / 'whole')),
                  jax.tree.leaves(_params(cut))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with open(cut / 'metrics.jsonl') as f, open(tmp_path / 'whole' /
                                              'metrics.jsonl') as g:
    strip = lambda lines: [{k: v for k, v in json.loads(x).items()
                            if k != 'steps_per_s'} for x in lines]
    assert strip(f) == strip(g)


def test_watch_restores_the_previous_handler():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Watch() as watch:
    assert not watch.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)
    assert watch.should_stop(2)
  assert signal.getsignal(signal.SIGTERM) is before
  err = preemption.Preempted(7, '/m')
  assert err.code == 75 and 'saved at step 7' in str(err)


_HOSTS = textwrap.dedent('''
    import sys, time, jax
    sys.path.insert(0, {repo!r})
    from jax.experimental import multihost_utils
    from lmsi.runtime import distributed, preemption
    pid = int(sys.argv[1])
    distributed.initialize({address!r}, num_processes=2, process_id=pid,
                           local_device_count=1)
    with preemption.Watch() as watch:
      assert watch.multihost
      print('ready', flush=True)
      for step in range(1, 100000):
        time.sleep(0.01)
        multihost_utils.process_allgather(jax.numpy.ones(()))  # a "step"
        if watch.should_stop(step):
          err = preemption.Preempted(step, 'host %d' % pid)
          print(err, flush=True)
          raise err
''')


def test_two_hosts_stop_at_the_same_step_when_one_gets_sigterm():
  """Multi-host: JAX's own SIGTERM notifier (not lmsi's handler) and the
  preemption sync point: SIGTERM to one process only, both stop at one
  step and exit 75."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  script = _HOSTS.format(repo=REPO, address=f'localhost:{port}')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = [subprocess.Popen([sys.executable, '-c', script, str(i)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  for p in procs:  # both joined and looping
    for line in p.stdout:
      if line.strip() == 'ready':
        break
  time.sleep(1.0)
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [75, 75], outs
  steps = [int(o.split('saved at step ')[1].split(';')[0]) if 'saved at'
           in o else None for o in outs]
  print(f'\ntwo hosts, SIGTERM to host 1 only: both stopped at {steps}')
  assert steps[0] == steps[1] is not None
