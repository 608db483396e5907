r"""The stages of an LMSI round and the command line that runs each one.

A launcher turns `--stages=sample,aggregate,train,evaluate` and the user's
gin flags into a plan: a list of steps, run one after another, each a list of
`Task`s (one per shard) that may run at the same time. Every task is
`python -m <module> --gin_file=<run file> <gin flags...>`; the gin flags pass
through unchanged, so the launchers hold no hyperparameters.

A flag for one stage only is written `--<stage>.gin.X=V` (or
`--<stage>.gin_file=F`): `--aggregate.gin.OUTPUT_DIR=\"gs://b/selfgen\"`
reaches `lmsi.aggregate` alone, as `--gin.OUTPUT_DIR=\"gs://b/selfgen\"`,
after the flags that every stage gets.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Stage:
  """One binary: its module, its gin run file, how it runs on a slice.

  `sharded` stages split into `--gin.SHARD_INDEX=i --gin.NUM_SHARDS=n` jobs;
  `tpu` stages run as one JAX program on every host of a TPU slice, the
  others (numpy-only voting) on one CPU host.
  """

  name: str
  module: str
  run_file: str | None = None
  sharded: bool = False
  tpu: bool = True


STAGES = {s.name: s for s in (
    Stage('sample', 'lmsi.sample', 'gin/runs/sample.gin', sharded=True),
    Stage('aggregate', 'lmsi.aggregate', 'gin/runs/aggregate.gin', tpu=False),
    Stage('train', 'lmsi.train', 'gin/runs/finetune.gin'),
    Stage('evaluate', 'lmsi.evaluate', 'gin/runs/eval.gin'),
)}
ROUND = ('sample', 'aggregate', 'train', 'evaluate')
GIN_FLAGS = ('--gin_file=', '--gin.', '--gin_bindings=', '--gin_search_paths=')


def stage(name: str) -> Stage:
  """A stage of `STAGES` by name, or any module (`lmsi.foo`) with no run file.

  Raises:
    ValueError: for a name that is neither.
  """
  if name in STAGES:
    return STAGES[name]
  if '.' in name:
    return Stage(name.rsplit('.', 1)[1], name)
  raise ValueError(f'unknown stage {name!r}; expected one of '
                   f'{", ".join(STAGES)} or a module such as lmsi.sample')


def shell_join(args: Sequence[str]) -> str:
  """`shlex.join`, but a word holding single quotes goes in double quotes.

  `'--command=cd lmsi && ... '"'"'--gin.X="gs://b"'"'"''` then reads as
  `"--command=cd lmsi && ... '--gin.X=\\"gs://b\\"'"`; both mean the same
  words to a POSIX shell.
  """
  words = []
  for arg in args:
    if "'" in arg and not any(c in arg for c in '$`\\'):
      words.append('"' + arg.replace('"', '\\"') + '"')
    else:
      words.append(shlex.quote(arg))
  return ' '.join(words)


def check_gin_flags(args: Sequence[str]) -> list[str]:
  """Returns `args` if every one is a gin flag, `--gin.X=V` style.

  Raises:
    ValueError: naming the first argument that is not.
  """
  for arg in args:
    if not arg.startswith(GIN_FLAGS):
      raise ValueError(
          f'{arg!r} is not a gin flag: launchers pass only --gin_file=..., '
          '--gin.NAME=VALUE, --gin_bindings=... and --gin_search_paths=... '
          'through, to every stage or, as --<stage>.gin.NAME=VALUE, to one '
          'stage of --stages')
  return list(args)


@dataclasses.dataclass(frozen=True)
class Task:
  """One process to run on every host of a slice: `python -m <args...>`."""

  name: str  # 'sample-00001-of-00004', 'train'
  stage: Stage
  args: tuple[str, ...]  # module, then flags

  @property
  def command(self) -> list[str]:
    return ['python', '-m', *self.args]


def split_gin_flags(args: Sequence[str], stage_names: Sequence[str]
                    ) -> dict[str, list[str]]:
  """Each stage's gin flags: the common ones, then its `--<stage>.` ones.

  Raises:
    ValueError: naming an argument that is not a gin flag of either kind.
  """
  common, own = [], {n: [] for n in stage_names}
  for arg in args:
    head, dot, rest = arg[2:].partition('.')
    if arg.startswith('--') and dot and head in own:
      own[head].append(check_gin_flags([f'--{rest}'])[0])
    else:
      common.append(arg)
  check_gin_flags(common)
  return {n: common + own[n] for n in stage_names}


def tasks_for(s: Stage, gin_flags: Sequence[str], num_shards: int = 1
              ) -> list[Task]:
  """The tasks of one stage; a sharded stage gets one task per shard.

  Shard flags come last so they win over the same macros in gin files.
  """
  run_file = [f'--gin_file={s.run_file}'] if s.run_file else []
  base = (s.module, *[f for f in run_file if f not in gin_flags], *gin_flags)
  if not s.sharded or num_shards == 1:
    return [Task(s.name, s, base)]
  return [Task(f'{s.name}-{i:05d}-of-{num_shards:05d}', s,
               (*base, f'--gin.SHARD_INDEX={i}',
                f'--gin.NUM_SHARDS={num_shards}'))
          for i in range(num_shards)]


def plan(stage_names: Sequence[str], gin_flags: Sequence[str],
         num_shards: int = 1) -> list[list[Task]]:
  """Steps in order; the tasks within a step are independent.

  Raises:
    ValueError: for an unknown stage, a non-gin flag or num_shards < 1.
  """
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  chosen = [stage(n) for n in stage_names]
  flags_of = split_gin_flags(gin_flags, [s.name for s in chosen])
  return [tasks_for(s, flags_of[s.name], num_shards) for s in chosen]
