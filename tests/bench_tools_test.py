"""Every bench/ and tools/ entry, run without what it needs, stops at once
with exit status 2 and a message naming what is missing (bench/common.py's
`require`), not with a traceback from deep inside a run.

Four entries read no data and have no peer, so there is nothing to take
away from them: bench/weight_stream.py (random weights, lmsi alone),
tools/chaos.py (the demo study under kill -9, from the committed base),
tools/kv_cache.py (arithmetic on published shapes) and
tools/preemption_save.py (saves of the committed demo base);
bench/early_stop.py needs data only for `--workload=gsm8k` (its default
workload is the demo's).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA

NO_DATA = '/nonexistent/lmsi-data'
NEEDS_NOTHING = {'bench/weight_stream.py', 'tools/chaos.py',
                 'tools/kv_cache.py', 'tools/preemption_save.py'}
# entry (with arguments) -> what its message must name, run without data.
WITHOUT_DATA = {
    ('bench/sampling.py',): f'{NO_DATA}/gsm8k/test.jsonl',
    ('bench/decode_profile.py',): f'{NO_DATA}/gsm8k/test.jsonl',
    ('bench/early_stop.py', '--workload=gsm8k'):
        f'{NO_DATA}/gsm8k/test.jsonl',
    ('bench/rss.py',): f'{NO_DATA}/gsm8k/test.jsonl',
    ('bench/interleave.py', '--a=HEAD'): f'{NO_DATA}/gsm8k/test.jsonl',
    ('bench/train.py',): f'{NO_DATA}/gsm8k/test.jsonl',
    ('tools/smollm2_round.py',): f'{NO_DATA}/gsm8k/train.jsonl',
    ('tools/lm_eval_gsm8k.py', '--model_dir=runs/none/hf'):
        f'{NO_DATA}/gsm8k/test.jsonl',
}
# entry -> (the peer hidden from it, what its message must name).
WITHOUT_PEER = {
    ('bench/sampling.py', '--engines=llama_cpp,lmsi'): 'llama_cpp',
    ('bench/sampling.py', '--engines=transformers'): 'transformers',
    ('bench/train.py', '--engines=lmsi,torch'): 'torch',
    ('tools/lm_eval_gsm8k.py', '--model_dir=runs/none/hf'): 'lm_eval',
    ('tools/capacity.py',): 'libtpu',
}


def _run(args, env=None, timeout=120):
  return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, **(env or {})})


def _entries() -> set[str]:
  out = set()
  for folder in ('bench', 'tools'):
    for name in os.listdir(os.path.join(REPO, folder)):
      if name.endswith(('.py', '.sh')) and name not in (
          'common.py', 'llama_cpp_engine.py', '__init__.py'):
        out.add(f'{folder}/{name}')
  return out


def test_every_entry_is_covered():
  covered = ({a[0] for a in WITHOUT_DATA} | {a[0] for a in WITHOUT_PEER}
             | NEEDS_NOTHING | {'bench/device.sh', 'tools/demo_bars.py',
                                'tools/learners_table.py'})
  assert _entries() == covered


def _assert_names(proc, script: str, missing: str) -> None:
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert f'{script}: cannot run, missing:' in proc.stderr, proc.stderr[-2000:]
  assert missing in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize('args', sorted(WITHOUT_DATA))
def test_without_data(args):
  proc = _run([sys.executable, *args], {'LMSI_DATA_DIR': NO_DATA})
  script = ' '.join(args) if args[0] == 'bench/early_stop.py' else args[0]
  _assert_names(proc, script, WITHOUT_DATA[args])
  assert 'LMSI_DATA_DIR' in proc.stderr


@pytest.mark.parametrize('args', sorted(WITHOUT_PEER))
def test_without_its_peer(args, tmp_path):
  """The peer is hidden by a package of its name that fails to import."""
  peer = WITHOUT_PEER[args]
  os.makedirs(tmp_path / peer)
  (tmp_path / peer / '__init__.py').write_text(
      f'raise ImportError("{peer} hidden by the test")\n')
  env = {'PYTHONPATH': f'{tmp_path}{os.pathsep}{REPO}'}
  if os.path.isdir(SHARED_DATA):  # so that only the peer is missing
    env['LMSI_DATA_DIR'] = SHARED_DATA
  proc = _run([sys.executable, *args], env)
  _assert_names(proc, args[0], f'`{peer}`')


def test_demo_bars_without_runs(tmp_path):
  proc = _run([sys.executable, 'tools/demo_bars.py'])
  assert proc.returncode == 2 and 'usage: python tools/demo_bars.py' in (
      proc.stderr)
  proc = _run([sys.executable, 'tools/demo_bars.py', str(tmp_path / 'nope')])
  _assert_names(proc, 'tools/demo_bars.py',
                str(tmp_path / 'nope' / 'metrics.json'))


def test_learners_table_without_runs(tmp_path):
  proc = _run([sys.executable, 'tools/learners_table.py',
               str(tmp_path / 'nope')])
  _assert_names(proc, 'tools/learners_table.py',
                str(tmp_path / 'nope' / 'metrics.json'))


def test_device_bench_prepare_without_data():
  proc = _run(['bash', 'bench/device.sh', '--prepare'],
              {'LMSI_DATA_DIR': NO_DATA})
  _assert_names(proc, 'bench/device.sh --prepare',
                f'{NO_DATA}/gsm8k/test.jsonl')
