"""Launchers: the exact commands and XManager job specs they produce.

Covers a v4-32 sampling run split into 4 shard jobs, a v5e-16 fine-tuning
job and a spot queued-resource run, each with gin flags
holding quoted strings, plus recovery after a preemption.
"""

import asyncio
import io
import os
import shlex
import subprocess
import sys
import tempfile

import pytest

from launch import local
from launch import stages
from launch import tpu_vm
from launch import tpus
from launch import xm_launch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As the shell hands them over for `--gin.MODEL_DIR=\"gs://b/x\"` etc.
GIN = ('--gin_file=gin/models/smollm2_135m.gin',
       '--gin.MODEL_DIR="gs://b/x"', "--gin.TASK='lmsi_gsm8k_v1'")
AUTO = {'LMSI_DISTRIBUTED': 'auto'}


@pytest.mark.parametrize('name, gen, chips, topology, hosts, gcloud, runtime', [
    ('v4-8', 'v4', 4, '2x2x1', 1, 'v4-8', 'tpu-ubuntu2204-base'),
    ('v4-32', 'v4', 16, '2x2x4', 4, 'v4-32', 'tpu-ubuntu2204-base'),
    ('v4-128', 'v4', 64, '4x4x4', 16, 'v4-128', 'tpu-ubuntu2204-base'),
    ('v5p-8', 'v5p', 4, '2x2x1', 1, 'v5p-8', 'v2-alpha-tpuv5'),
    ('v5e-16', 'v5e', 16, '4x4', 4, 'v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5litepod-8', 'v5e', 8, '2x4', 1, 'v5litepod-8', 'v2-alpha-tpuv5-lite'),
    ('v6e-8', 'v6e', 8, '2x4', 1, 'v6e-8', 'v2-alpha-tpuv6e'),
    ('v6e-256', 'v6e', 256, '16x16', 64, 'v6e-256', 'v2-alpha-tpuv6e'),
])
def test_tpu_slices(name, gen, chips, topology, hosts, gcloud, runtime):
  t = tpus.parse(name)
  assert (t.generation, t.chips, t.topology, t.hosts) == (
      gen, chips, topology, hosts)
  assert (t.accelerator_type, t.runtime_version) == (gcloud, runtime)
  assert t.xm_requirements() == {f'tpu_{gen}': topology}


@pytest.mark.parametrize('name', ['v3-8', 'v4-4', 'v4-33', 'v5e-12', 'tpu'])
def test_bad_tpu_types(name):
  with pytest.raises(ValueError):
    tpus.parse(name)


def test_plan_passes_gin_flags_through_unchanged():
  [[task]] = stages.plan(['lmsi.evaluate'], GIN)
  assert task.command == ['python', '-m', 'lmsi.evaluate', *GIN]
  [[task]] = stages.plan(['train'], ['--gin_file=gin/runs/finetune.gin'])
  assert task.args == ('lmsi.train', '--gin_file=gin/runs/finetune.gin')
  with pytest.raises(ValueError, match='not a gin flag'):
    stages.plan(['train'], ['--model_dir=x'])
  with pytest.raises(ValueError, match='unknown stage'):
    stages.plan(['sampel'], GIN)


def test_stage_scoped_gin_flags():
  steps = stages.plan(
      ['sample', 'aggregate'],
      ['--aggregate.gin.OUTPUT_DIR="gs://b/selfgen"', *GIN,
       '--sample.gin_file=gin/models/smollm2_135m.gin',
       '--sample.gin.OUTPUT_DIR="gs://b/samples"'], num_shards=2)
  assert [t.args for t in steps[0]] == [
      ('lmsi.sample', '--gin_file=gin/runs/sample.gin', *GIN,
       '--gin_file=gin/models/smollm2_135m.gin',
       '--gin.OUTPUT_DIR="gs://b/samples"', f'--gin.SHARD_INDEX={i}',
       '--gin.NUM_SHARDS=2') for i in range(2)]
  assert [t.args for t in steps[1]] == [
      ('lmsi.aggregate', '--gin_file=gin/runs/aggregate.gin', *GIN,
       '--gin.OUTPUT_DIR="gs://b/selfgen"')]
  with pytest.raises(ValueError, match='not a gin flag'):
    stages.plan(['sample'], ['--train.gin.X=1'])  # train is not in the plan
  with pytest.raises(ValueError, match='not a gin flag'):
    stages.plan(['sample'], ['--sample.seed=1'])


def test_shell_join_round_trips():
  words = ['--command=cd lmsi && bash x.sh \'--gin.A="gs://b"\'', 'a b',
           "it's $HOME", '--gin.B="c"']
  assert shlex.split(stages.shell_join(words)) == words


def _shards(n, accelerator='v4-32', requirements=None):
  return [xm_launch.JobSpec(
      name=f'sample-{i:05d}-of-{n:05d}',
      args=('lmsi.sample', '--gin_file=gin/runs/sample.gin', *GIN,
            f'--gin.SHARD_INDEX={i}', f'--gin.NUM_SHARDS={n}'),
      accelerator=accelerator,
      requirements=requirements or {'tpu_v4': '2x2x4'}, env_vars=AUTO)
          for i in range(n)]


def test_xm_v4_32_sampling_in_4_shard_jobs():
  specs = xm_launch.job_specs(stages.plan(['sample'], GIN, 4),
                              xm_launch.accelerators('v4-32', ['sample']))
  assert specs == [_shards(4)]


def test_xm_v5e_16_finetuning_job():
  specs = xm_launch.job_specs(stages.plan(['train'], GIN),
                              xm_launch.accelerators('v5e-16', ['train']))
  assert specs == [[xm_launch.JobSpec(
      name='train', args=('lmsi.train', '--gin_file=gin/runs/finetune.gin',
                          *GIN),
      accelerator='v5e-16', requirements={'tpu_v5e': '4x4'},
      env_vars=AUTO)]]


def test_xm_refuses_tpu_jobs_its_backend_cannot_place():
  """xm_local's Kubernetes backend drops TPU requests: TPU jobs are refused
  with what to run instead; CPU-only plans pass."""
  tpu = xm_launch.job_specs(stages.plan(['train'], GIN),
                            xm_launch.accelerators('v5e-16', ['train']))
  with pytest.raises(Exception, match='train: xm_local.*launch/tpu_vm.py'):
    xm_launch.check_placeable(tpu)
  cpu = xm_launch.job_specs(stages.plan(['aggregate'], GIN),
                            xm_launch.accelerators('cpu', ['aggregate']))
  xm_launch.check_placeable(cpu)


def test_xm_accelerator_per_stage():
  names = list(stages.ROUND)
  assert xm_launch.accelerators('v4-32,train=v5e-16', names) == {
      'sample': 'v4-32', 'aggregate': 'cpu', 'train': 'v5e-16',
      'evaluate': 'v4-32'}
  with pytest.raises(ValueError, match='needs a TPU'):
    xm_launch.accelerators('train=v5e-16', names)
  with pytest.raises(ValueError, match='not in --stages'):
    xm_launch.accelerators('v4-32,trian=v5e-16', names)
  with pytest.raises(ValueError, match='unknown TPU type'):
    xm_launch.accelerators('v9-8', names)


class _Unit:

  def __init__(self, log, name):
    self.log, self.name = log, name

  async def wait_until_complete(self):
    self.log.append(('done', self.name))
    return self


class _Experiment:
  """Records `add` and completion order like an xm.Experiment's work units."""

  def __init__(self):
    self.log, self.jobs = [], []

  async def add(self, job):
    self.log.append(('add', job.name))
    self.jobs.append(job)
    return _Unit(self.log, job.name)


def test_xm_jobs_submitted_step_by_step():
  xm = pytest.importorskip('xmanager.xm')
  xm_utils = pytest.importorskip('xmanager.xm.utils')
  names = ['sample', 'aggregate', 'train']
  specs = xm_launch.job_specs(stages.plan(names, GIN, 4),
                              xm_launch.accelerators('v4-32,train=v5e-16',
                                                     names))
  experiment = _Experiment()
  asyncio.run(xm_launch.submit(experiment, specs, 'IMAGE',
                               lambda r: ('executor', r)))
  shards = [f'sample-{i:05d}-of-00004' for i in range(4)]
  assert experiment.log == [
      *[('add', s) for s in shards], *[('done', s) for s in shards],
      ('add', 'aggregate'), ('done', 'aggregate'),
      ('add', 'train'), ('done', 'train')]
  jobs = {j.name: j for j in experiment.jobs}
  for spec in _shards(4):
    job = jobs[spec.name]
    assert job.executable == 'IMAGE'
    assert job.executor == ('executor', xm.JobRequirements(tpu_v4='2x2x4'))
    assert job.args.to_list(xm_utils.ARGV_ESCAPER) == list(spec.args)
    assert job.env_vars == AUTO
  assert jobs['train'].executor == ('executor',
                                    xm.JobRequirements(tpu_v5e='4x4'))
  assert jobs['aggregate'].executor == ('executor', xm.JobRequirements())
  assert jobs['aggregate'].env_vars == {}


def test_xm_dry_run_prints_jobs_from_the_shell():
  # The README's quoting, through a real shell.
  cmd = ('python launch/xm_launch.py --dry_run --stages=sample '
         '--num_shards=2 --accelerator=v4-32 -- '
         '--gin_file=gin/models/smollm2_135m.gin '
         '--gin.MODEL_DIR=\\"gs://b/x\\"')
  env = {**os.environ, 'PATH': os.path.dirname(sys.executable) + ':'
         + os.environ['PATH']}
  p = subprocess.run(['bash', '-c', cmd], cwd=REPO, env=env, text=True,
                     capture_output=True, timeout=120, check=True)
  expected = ['# step 1 of 1: 2 job(s) at once']
  for i in range(2):
    expected += [
        f"job sample-{i:05d}-of-00002 on v4-32: "
        "xm.JobRequirements(tpu_v4='2x2x4'), 4 host(s)",
        '  LMSI_DISTRIBUTED=auto python -m lmsi.sample '
        '--gin_file=gin/runs/sample.gin '
        '--gin_file=gin/models/smollm2_135m.gin '
        f'\'--gin.MODEL_DIR="gs://b/x"\' --gin.SHARD_INDEX={i} '
        '--gin.NUM_SHARDS=2']
  assert p.stdout.splitlines() == expected


def _pod(**kw):
  return tpu_vm.Pod('lmsi-r1', 'us-central2-b', 'v4-32', **kw)


def test_gcloud_create_and_delete_commands():
  assert _pod(project='p').create() == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'lmsi-r1',
      '--zone=us-central2-b', '--project=p', '--accelerator-type=v4-32',
      '--version=tpu-ubuntu2204-base']
  assert _pod(spot=True).create()[-1] == '--spot'
  assert tpu_vm.Pod('q', 'z', 'v5e-16', queued=True, spot=True).create() == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'q',
      '--node-id=q', '--zone=z', '--accelerator-type=v5litepod-16',
      '--runtime-version=v2-alpha-tpuv5-lite', '--spot']
  assert _pod(queued=True).delete() == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'lmsi-r1',
      '--zone=us-central2-b', '--force', '--quiet']
  assert _pod().delete() == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'lmsi-r1',
      '--zone=us-central2-b', '--quiet']


def _ssh(worker, command):
  return ('gcloud compute tpus tpu-vm ssh lmsi-r1 --zone=us-central2-b '
          f'--worker={worker} "--command={command}"')


def test_spot_queued_resource_dry_run(capsys):
  code = tpu_vm.main([
      'launch', '--name=lmsi-r1', '--zone=us-central2-b',
      '--accelerator=v4-32', '--queued', '--spot', '--delete', '--dry_run',
      '--stages=sample,aggregate,train', '--', *GIN])
  assert code == 0
  archive = os.path.join(tempfile.gettempdir(), 'lmsi-lmsi-r1.tar.gz')
  gin = ('--gin_file=gin/models/smollm2_135m.gin '
         '\'--gin.MODEL_DIR=\\"gs://b/x\\"\' '
         '\\"--gin.TASK=\'lmsi_gsm8k_v1\'\\"')
  qr = 'gcloud compute tpus queued-resources'
  assert capsys.readouterr().out.splitlines() == [
      f'{qr} create lmsi-r1 --node-id=lmsi-r1 --zone=us-central2-b '
      '--accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base --spot',
      '# repeat until the state is ACTIVE',
      f"{qr} describe lmsi-r1 --zone=us-central2-b "
      "'--format=value(state.state)'",
      f'git -C {REPO} archive --format=tar.gz --output={archive} HEAD',
      f'gcloud compute tpus tpu-vm scp {archive} lmsi-r1:lmsi.tar.gz '
      '--zone=us-central2-b --worker=all',
      "gcloud compute tpus tpu-vm ssh lmsi-r1 --zone=us-central2-b "
      "--worker=all '--command=mkdir -p lmsi && tar -xzf lmsi.tar.gz -C lmsi "
      "&& bash lmsi/launch/tpu_vm.sh'",
      '# stage sample',
      _ssh('all', 'cd lmsi && bash launch/tpu_vm.sh lmsi.sample '
           f'--gin_file=gin/runs/sample.gin {gin}'),
      '# stage aggregate',
      _ssh('0', 'cd lmsi && JAX_PLATFORMS=cpu LMSI_DISTRIBUTED=none bash '
           'launch/tpu_vm.sh lmsi.aggregate '
           f'--gin_file=gin/runs/aggregate.gin {gin}'),
      '# stage train',
      _ssh('all', 'cd lmsi && bash launch/tpu_vm.sh lmsi.train '
           f'--gin_file=gin/runs/finetune.gin {gin}'),
      '# after a failure with the slice PREEMPTED, SUSPENDED or gone: '
      'delete, create, setup, then the failed stage again; it resumes from '
      'its files',
      f'{qr} delete lmsi-r1 --zone=us-central2-b --force --quiet',
  ]


def test_remote_command_keeps_gin_quotes():
  [[task]] = stages.plan(['train'], GIN)
  command = _pod().run(task)[-1].split('=', 1)[1]
  assert shlex.split(command)[-3:] == list(GIN)


class _Cloud:
  """Answers gcloud commands: the first train stage dies with the slice."""

  def __init__(self):
    self.ran, self.preempted = [], False

  def __call__(self, cmd, capture):
    self.ran.append(list(cmd))
    text = ' '.join(cmd)
    if 'describe' in text:
      return 0, 'SUSPENDED' if self.preempted else 'ACTIVE'
    if 'lmsi.train' in text and not any('delete' in c for c in self.ran[:-1]):
      self.preempted = True
      return 255, ''
    if ' delete ' in text:
      self.preempted = False
    return 0, ''


def test_preempted_stage_recreates_the_slice_and_reruns():
  pod = _pod(queued=True, spot=True)
  cloud = _Cloud()
  runner = tpu_vm.Runner(pod, execute=cloud, out=io.StringIO(),
                         sleep=lambda s: None)
  steps = stages.plan(['sample', 'train'], GIN)
  runner.run(steps)
  archive = os.path.join(tempfile.gettempdir(), 'lmsi-lmsi-r1.tar.gz')
  assert cloud.ran == [
      pod.run(steps[0][0]),
      pod.run(steps[1][0]),  # exit 255
      pod.state(),  # SUSPENDED: preempted
      pod.delete(), pod.create(), pod.state(),  # ACTIVE again
      *pod.setup(archive),
      pod.run(steps[1][0]),  # resumes from its files
  ]


def test_preempted_exit_code_resumes_even_on_a_ready_slice():
  """Exit 75 (the stage saved after SIGTERM) reruns the stage, which
  resumes from its checkpoint, without recreating a slice still READY."""
  from lmsi.runtime import preemption  # pylint: disable=g-import-not-at-top
  assert tpu_vm.EXIT_PREEMPTED == preemption.EXIT_PREEMPTED
  calls, codes = [], [preemption.EXIT_PREEMPTED, 0]

  def execute(cmd, capture):
    calls.append(cmd)
    return (0, 'READY') if 'describe' in cmd else (codes.pop(0), '')

  pod = _pod()
  runner = tpu_vm.Runner(pod, execute=execute, out=io.StringIO())
  steps = stages.plan(['train'], GIN)
  runner.run(steps)
  assert calls == [pod.run(steps[0][0]), pod.state(), pod.run(steps[0][0])]


def test_failed_stage_on_a_healthy_slice_is_not_retried():
  calls = []

  def execute(cmd, capture):
    calls.append(cmd)
    return (0, 'READY') if 'describe' in cmd else (1, '')

  runner = tpu_vm.Runner(_pod(), execute=execute, out=io.StringIO())
  with pytest.raises(tpu_vm.StageFailed, match='READY'):
    runner.run(stages.plan(['train'], GIN))
  assert len(calls) == 2


def test_local_process_env():
  env = local.process_env(
      {'XLA_FLAGS': '--xla_foo=1 --xla_force_host_platform_device_count=8',
       'HOME': '/h'},
      coordinator='localhost:5', num_processes=2, process_id=1,
      devices_per_process=4)
  assert env == {
      'HOME': '/h', 'LMSI_COORDINATOR_ADDRESS': 'localhost:5',
      'LMSI_NUM_PROCESSES': '2', 'LMSI_PROCESS_ID': '1',
      'XLA_FLAGS': '--xla_foo=1 --xla_force_host_platform_device_count=4',
      'JAX_PLATFORMS': 'cpu', 'LMSI_SHARED_DISK': '1',
      'PYTHONUNBUFFERED': '1'}


def test_worker_setup_installs_the_runtime_only():
  """tpu_vm.sh and the image install requirements.lock (no test extra, no
  special index: torch's +cpu wheels live only on PyTorch's own index), and
  apt waits for dpkg's lock on a freshly booted VM."""
  script = open(os.path.join(REPO, 'launch', 'tpu_vm.sh')).read()
  docker = open(os.path.join(REPO, 'launch', 'Dockerfile')).read()
  assert '-r requirements.lock' in script and 'requirements.lock' in docker
  assert 'requirements-test' not in script + docker
  assert 'DPkg::Lock::Timeout' in script
  lock = open(os.path.join(REPO, 'requirements.lock')).read()
  for needle in ('+cpu', '--index-url', '--extra-index-url', 'torch==',
                 'llama_cpp', 'pytest'):
    assert needle not in lock, needle
