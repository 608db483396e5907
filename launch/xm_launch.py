r"""XManager launcher: each LMSI stage as jobs on a TPU slice, steps in order.

  xmanager launch launch/xm_launch.py -- \
    --stages=sample,aggregate,train,evaluate --num_shards=4 \
    --accelerator=v4-32,train=v5e-16 -- \
    --gin_file=gin/models/smollm2_135m.gin --gin.MODEL_DIR=\"gs://b/x\"

Gin flags follow a second `--` and reach every stage unchanged. Sampling is
`--num_shards` jobs at once; a stage starts when the one before has finished.
`--dry_run` prints the jobs and needs no xmanager. Jobs run launch/Dockerfile's
image (entrypoint `python -m`) on xm_local's Kubernetes backend; TPU jobs get
`xm.JobRequirements(tpu_v4='2x2x4')` and LMSI_DISTRIBUTED=auto.

Submitting TPU jobs is refused: xmanager 0.8.5's Kubernetes backend
(`xmanager/cloud/kubernetes.py`) sets no `google.com/tpu` limit and no GKE
TPU node selector for them (`requirements_from_executor` passes TPU
resources over), so they would land on CPU nodes, where
`jax.distributed.initialize()` fails; its `wait_for_job` also waits for a
completion time a failed job never gets. Run TPU stages with
launch/tpu_vm.py (gcloud TPU VMs, queued resources, preemption-aware).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ''):  # `python launch/...` or `xmanager launch`.
  sys.path.insert(0, REPO)
from launch import stages  # pylint: disable=g-import-not-at-top
from launch import tpus  # pylint: disable=g-import-not-at-top
try:  # Also defines --xm_launch_script, which `xmanager launch` passes.
  from xmanager import xm  # pylint: disable=g-import-not-at-top
except ImportError:  # --dry_run needs no xmanager.
  xm = None

_STAGES = flags.DEFINE_list('stages', list(stages.ROUND), 'Stages, in order.')
_ACCELERATOR = flags.DEFINE_string(
    'accelerator', None, 'TPU slice of the TPU stages, e.g. v4-32, and '
    'per-stage choices as stage=type: v4-32,train=v5e-16,aggregate=cpu.')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 1, 'Jobs per sampling stage.')
_TITLE = flags.DEFINE_string('experiment_title', 'lmsi', 'Experiment title.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the jobs; submit none.')

CPU = 'cpu'


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """One XManager job: what `xm.Job` gets, without needing xmanager."""

  name: str
  args: tuple[str, ...]  # after the image's `python -m` entrypoint
  accelerator: str  # 'v4-32', or 'cpu'
  requirements: dict[str, str]  # xm.JobRequirements keywords; {} on CPU
  env_vars: dict[str, str]


def accelerators(spec: str, stage_names: Sequence[str]) -> dict[str, str]:
  """Maps each stage to its slice: `v4-32,train=v5e-16` -> {'sample': ...}.

  Raises:
    ValueError: for an unknown TPU type, or a TPU stage with no slice.
  """
  pairs = [item.partition('=') for item in spec.split(',') if item]
  chosen = {name: value for name, sep, value in pairs if sep}
  default = next((name for name, sep, _ in pairs if not sep), None)
  result = {s.name: chosen.pop(s.name, None) or (default if s.tpu else CPU)
            for s in map(stages.stage, stage_names)}
  if chosen:
    raise ValueError(f'--accelerator names stages {sorted(chosen)} that are '
                     f'not in --stages={",".join(stage_names)}')
  for name, acc in result.items():
    if acc is None:
      raise ValueError(f'stage {name} needs a TPU: pass --accelerator')
    if acc != CPU:
      tpus.parse(acc)
  return result


def job_specs(steps: Sequence[Sequence[stages.Task]],
              accelerator: dict[str, str]) -> list[list[JobSpec]]:
  """The jobs of each step of a plan (see `stages.plan`)."""
  def spec(task: stages.Task) -> JobSpec:
    acc = accelerator[task.stage.name]
    tpu = acc != CPU
    return JobSpec(
        name=task.name, args=task.args, accelerator=acc,
        requirements=tpus.parse(acc).xm_requirements() if tpu else {},
        env_vars={'LMSI_DISTRIBUTED': 'auto'} if tpu else {})
  return [[spec(t) for t in step] for step in steps]


def describe(specs: Sequence[Sequence[JobSpec]]) -> str:
  """The dry-run text: each step's jobs, resources and command."""
  lines = []
  for n, step in enumerate(specs, 1):
    lines.append(f'# step {n} of {len(specs)}: {len(step)} job(s) at once')
    for j in step:
      if j.requirements:
        hosts = tpus.parse(j.accelerator).hosts
        res = ', '.join(f'{k}={v!r}' for k, v in j.requirements.items())
        where = f'{j.accelerator}: xm.JobRequirements({res}), {hosts} host(s)'
      else:
        where = 'cpu: xm.JobRequirements()'
      env = ''.join(f'{k}={v} ' for k, v in j.env_vars.items())
      lines.append(f'job {j.name} on {where}')
      lines.append(f'  {env}python -m {stages.shell_join(j.args)}')
  return '\n'.join(lines)


def xm_jobs(step: Sequence[JobSpec], executable: Any,
            make_executor: Callable[[Any], Any]) -> list[Any]:
  """`xm.Job`s for one step; `make_executor` maps JobRequirements to one."""
  return [xm.Job(executable=executable, name=j.name, args=list(j.args),
                 executor=make_executor(xm.JobRequirements(**j.requirements)),
                 env_vars=dict(j.env_vars)) for j in step]


async def submit(experiment: Any, specs: Sequence[Sequence[JobSpec]],
                 executable: Any, make_executor: Callable[[Any], Any]) -> None:
  """Adds each step's jobs as work units; waits for them before the next."""
  for step in specs:
    units = [await experiment.add(job)
             for job in xm_jobs(step, executable, make_executor)]
    await asyncio.gather(*(u.wait_until_complete() for u in units))


async def _launch(specs: Sequence[Sequence[JobSpec]], title: str) -> None:
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top
  async with xm_local.create_experiment(experiment_title=title) as experiment:
    [executable] = experiment.package([xm.Packageable(
        executable_spec=xm.Dockerfile(
            path=REPO, dockerfile=os.path.join(REPO, 'launch', 'Dockerfile')),
        executor_spec=xm_local.Kubernetes.Spec())])
    await submit(experiment, specs, executable,
                 lambda r: xm_local.Kubernetes(requirements=r))


def main(argv: Sequence[str]) -> None:
  steps = stages.plan(_STAGES.value, argv[1:], _NUM_SHARDS.value)
  specs = job_specs(steps, accelerators(_ACCELERATOR.value or '',
                                        _STAGES.value))
  print(describe(specs), flush=True)
  if _DRY_RUN.value:
    return
  check_placeable(specs)
  asyncio.run(_launch(specs, _TITLE.value))


def check_placeable(specs: Sequence[Sequence[JobSpec]]) -> None:
  """Refuses jobs the Kubernetes backend cannot place (module docstring).

  Raises:
    app.UsageError: naming the TPU jobs and what to run instead.
  """
  tpu = [j.name for step in specs for j in step if j.requirements]
  if tpu:
    raise app.UsageError(
        f'{", ".join(tpu)}: xm_local\'s Kubernetes backend requests no TPU '
        'for a job (no google.com/tpu limit, no GKE TPU node selector), so '
        'it would run on a CPU node; launch TPU stages with '
        'launch/tpu_vm.py, or use --dry_run to print the jobs')


if __name__ == '__main__':
  app.run(main)
