r"""gcloud launcher: a Cloud TPU VM slice that runs LMSI stages on every host.

  python launch/tpu_vm.py launch --name=lmsi-r1 --zone=us-central2-b \
    --accelerator=v4-32 --queued --spot --delete \
    --stages=sample,aggregate,train,evaluate -- \
    --gin_file=gin/models/smollm2_135m.gin --gin.MODEL_DIR=\"gs://b/x\"

Commands: `create` (a TPU VM, or with --queued a queued resource, on demand
or --spot), `setup` (ship `git archive HEAD` to every worker and build its
venv with launch/tpu_vm.sh), `run` (each stage on every worker through
`gcloud compute tpus tpu-vm ssh --worker=all`), `delete`, and `launch` (all
of them; --delete deletes at the end). Gin flags follow `--` and reach every
stage unchanged. When a stage fails because the slice was preempted, `run`
recreates the slice, sets it up again and re-runs the stage, which resumes
from the files it already wrote. `--dry_run` prints every command instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TextIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ''):  # `python launch/tpu_vm.py`
  sys.path.insert(0, REPO)
from launch import stages  # pylint: disable=g-import-not-at-top
from launch import tpus  # pylint: disable=g-import-not-at-top

TPU_VM = ['gcloud', 'compute', 'tpus', 'tpu-vm']
QUEUED = ['gcloud', 'compute', 'tpus', 'queued-resources']
READY = ('READY', 'ACTIVE')
# A stage's exit code after a SIGTERM it saved for (lmsi.runtime.preemption's
# EXIT_PREEMPTED): resume it, even on a slice that still reports READY.
EXIT_PREEMPTED = 75
WAITING = ('CREATING', 'ACCEPTED', 'WAITING_FOR_RESOURCES', 'PROVISIONING')
CPU_ENV = 'JAX_PLATFORMS=cpu LMSI_DISTRIBUTED=none '  # one host, no TPU


@dataclasses.dataclass(frozen=True)
class Pod:
  """A named TPU slice and the gcloud commands that manage it."""

  name: str
  zone: str
  accelerator: str  # 'v4-32', 'v5e-16', ...
  project: str | None = None
  spot: bool = False
  queued: bool = False
  remote_dir: str = 'lmsi'

  def _where(self) -> list[str]:
    return [f'--zone={self.zone}'] + (
        [f'--project={self.project}'] if self.project else [])

  def create(self) -> list[str]:
    tpu = tpus.parse(self.accelerator)
    spot = ['--spot'] if self.spot else []
    if self.queued:
      return [*QUEUED, 'create', self.name, f'--node-id={self.name}',
              *self._where(), f'--accelerator-type={tpu.accelerator_type}',
              f'--runtime-version={tpu.runtime_version}', *spot]
    return [*TPU_VM, 'create', self.name, *self._where(),
            f'--accelerator-type={tpu.accelerator_type}',
            f'--version={tpu.runtime_version}', *spot]

  def state(self) -> list[str]:
    field = 'state.state' if self.queued else 'state'
    return [*(QUEUED if self.queued else TPU_VM), 'describe', self.name,
            *self._where(), f'--format=value({field})']

  def delete(self) -> list[str]:
    if self.queued:  # --force deletes the node with the request.
      return [*QUEUED, 'delete', self.name, *self._where(), '--force',
              '--quiet']
    return [*TPU_VM, 'delete', self.name, *self._where(), '--quiet']

  def ssh(self, command: str, worker: str = 'all') -> list[str]:
    return [*TPU_VM, 'ssh', self.name, *self._where(), f'--worker={worker}',
            f'--command={command}']

  def setup(self, archive: str) -> list[list[str]]:
    d = self.remote_dir
    return [['git', '-C', REPO, 'archive', '--format=tar.gz',
             f'--output={archive}', 'HEAD'],
            [*TPU_VM, 'scp', archive, f'{self.name}:{d}.tar.gz',
             *self._where(), '--worker=all'],
            self.ssh(f'mkdir -p {d} && tar -xzf {d}.tar.gz -C {d} && '
                     f'bash {d}/launch/tpu_vm.sh')]

  def run(self, task: stages.Task) -> list[str]:
    """A TPU stage runs on every worker; a CPU stage on worker 0 alone."""
    env = '' if task.stage.tpu else CPU_ENV
    command = (f'cd {self.remote_dir} && {env}'
               f'{stages.shell_join(["bash", "launch/tpu_vm.sh", *task.args])}')
    return self.ssh(command, 'all' if task.stage.tpu else '0')


class StageFailed(RuntimeError):
  """A command or stage failed on a slice that was not preempted."""


Execute = Callable[[Sequence[str], bool], tuple[int, str]]


def execute(cmd: Sequence[str], capture: bool) -> tuple[int, str]:
  """Runs `cmd`; returns its exit code and, if `capture`, its stdout."""
  p = subprocess.run(list(cmd), check=False, text=True,
                     stdout=subprocess.PIPE if capture else None)
  return p.returncode, (p.stdout or '').strip()


@dataclasses.dataclass
class Runner:
  """Prints each command, then runs it unless `dry_run`."""

  pod: Pod
  dry_run: bool = False
  max_attempts: int = 5
  poll_seconds: float = 60.0
  execute: Execute = execute
  out: TextIO | None = None  # None: sys.stdout at the time of printing
  sleep: Callable[[float], None] = time.sleep

  def _do(self, cmd: Sequence[str], capture: bool = False) -> tuple[int, str]:
    print(stages.shell_join(cmd), file=self.out or sys.stdout, flush=True)
    return (0, '') if self.dry_run else self.execute(cmd, capture)

  def _say(self, text: str) -> None:
    print(f'# {text}', file=self.out or sys.stdout, flush=True)

  def _check(self, cmd: Sequence[str]) -> None:
    rc, _ = self._do(cmd)
    if rc:
      raise StageFailed(f'exit code {rc}: {stages.shell_join(cmd)}')

  def state(self) -> str:
    rc, state = self._do(self.pod.state(), capture=True)
    return state if rc == 0 else 'MISSING'

  def create(self) -> None:
    self._check(self.pod.create())
    if not self.pod.queued:
      return  # `tpu-vm create` returns once the VM is READY.
    self._say('repeat until the state is ACTIVE')
    if self.dry_run:
      self._do(self.pod.state())
      return
    while (state := self.state()) in WAITING:
      self.sleep(self.poll_seconds)
    if state not in READY:
      raise StageFailed(f'queued resource {self.pod.name} is {state}')

  def setup(self) -> None:
    archive = os.path.join(tempfile.gettempdir(),
                           f'lmsi-{self.pod.name}.tar.gz')
    for cmd in self.pod.setup(archive):
      self._check(cmd)

  def delete(self) -> None:
    self._do(self.pod.delete())

  def run(self, steps: Sequence[Sequence[stages.Task]]) -> None:
    for task in (t for step in steps for t in step):
      self._say(f'stage {task.name}')
      self._run_task(task)
    if self.dry_run:
      self._say('after a failure with the slice PREEMPTED, SUSPENDED or gone: '
                'delete, create, setup, then the failed stage again; it '
                'resumes from its files')

  def _run_task(self, task: stages.Task) -> None:
    for attempt in range(1, self.max_attempts + 1):
      rc, _ = self._do(self.pod.run(task))
      if rc == 0:
        return
      state = self.state()
      if rc == EXIT_PREEMPTED and state in READY:
        self._say(f'{task.name} was preempted (exit {rc}) and saved; the '
                  f'slice is {state}: running it again resumes it')
        continue
      if state in READY:  # The slice is fine: the stage itself failed.
        raise StageFailed(f'{task.name} exited with {rc} on a {state} slice')
      self._say(f'{task.name} failed (attempt {attempt}) and the slice is '
                f'{state}: recreating it')
      self.delete()
      self.create()
      self.setup()
    raise StageFailed(f'{task.name} failed {self.max_attempts} times')


def main(argv: Sequence[str]) -> int:
  """`tpu_vm.py COMMAND [flags] -- [gin flags]`; returns the exit code."""
  argv = list(argv)
  cut = argv.index('--') if '--' in argv else len(argv)
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('command',
                      choices=('create', 'setup', 'run', 'delete', 'launch'))
  parser.add_argument('--name', required=True)
  parser.add_argument('--zone', required=True)
  parser.add_argument('--accelerator', required=True, help='e.g. v4-32')
  parser.add_argument('--project')
  parser.add_argument('--spot', action='store_true')
  parser.add_argument('--queued', action='store_true',
                      help='create a queued resource instead of a TPU VM')
  parser.add_argument('--stages', default=','.join(stages.ROUND))
  parser.add_argument('--num_shards', type=int, default=1)
  parser.add_argument('--max_attempts', type=int, default=5)
  parser.add_argument('--delete', action='store_true',
                      help='launch: delete the slice at the end')
  parser.add_argument('--dry_run', action='store_true')
  args = parser.parse_args(argv[:cut])
  steps = stages.plan(args.stages.split(','), argv[cut + 1:], args.num_shards)
  pod = Pod(args.name, args.zone, args.accelerator, project=args.project,
            spot=args.spot, queued=args.queued)
  runner = Runner(pod, dry_run=args.dry_run,
                      max_attempts=args.max_attempts)
  try:
    if args.command in ('create', 'launch'):
      runner.create()
    if args.command in ('setup', 'launch'):
      runner.setup()
    if args.command in ('run', 'launch'):
      runner.run(steps)
  except StageFailed as e:
    print(f'tpu_vm.py: {e}', file=sys.stderr)
    return 1
  finally:
    if args.command == 'delete' or (args.command == 'launch' and args.delete):
      runner.delete()
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
