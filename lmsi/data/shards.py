"""Sample shards: their names, completeness checks and merging (stages 3-4).

The sampling stage writes `samples-SSSSS-of-NNNNN.jsonl` (`SampledPath`
records, each with a `.COMPLETED` marker); aggregation reads a finished set
of them back. A set is finished when every shard of one sharding is there
and complete, and no (id, sample) pair repeats.
"""

from __future__ import annotations

import os

from etils import epath

from lmsi.data import records

from lmsi.runtime import fileio

SHARDS = 'samples-*-of-*.jsonl'
MERGED = 'samples.merged.jsonl'


def shard_path(output_dir: str, shard_index: int, num_shards: int) -> str:
  return os.path.join(output_dir,
                      f'samples-{shard_index:05d}-of-{num_shards:05d}.jsonl')


def shard_paths(samples_dir: str) -> list[str]:
  """The shard files of `samples_dir`, checked to be one whole sharding.

  Raises:
    FileNotFoundError: if there are no shards or one is missing.
    ValueError: if shards of different shardings are mixed.
  """
  paths = sorted(str(p) for p in epath.Path(samples_dir).glob(SHARDS))
  if not paths:
    raise FileNotFoundError(f'no samples-*.jsonl shards in {samples_dir}')
  totals = {int(p.rsplit('-of-', 1)[1].split('.')[0]) for p in paths}
  if len(totals) != 1:
    raise ValueError(f'{samples_dir}: shards of different shardings '
                     f'(-of-{sorted(totals)}); remove the stale ones')
  total = totals.pop()
  missing = sorted(set(range(total)) - {
      int(os.path.basename(p).split('-')[1]) for p in paths})
  if missing:
    raise FileNotFoundError(f'{samples_dir}: shards {missing} of {total} '
                            'are missing')
  return paths


def read_samples(samples_dir: str) -> list[records.SampledPath]:
  """All shards of one finished sampling run, merged in (id, sample) order.

  Raises:
    FileNotFoundError: if there are no shards, or a shard is missing or
      unfinished (no valid `.COMPLETED` marker).
    ValueError: if shards of different shardings are mixed or an (id,
      sample) pair repeats.
  """
  out, seen = [], set()
  for path in shard_paths(samples_dir):
    for rec in records.read_jsonl(path, records.SampledPath):
      if (rec.id, rec.sample) in seen:
        raise ValueError(f'{path}: question {rec.id!r} sample {rec.sample} '
                         'also appears in another shard')
      seen.add((rec.id, rec.sample))
      out.append(rec)
  return sorted(out, key=lambda p: (p.id, p.sample))


def merge(output_dir: str) -> str:
  """Gathers a finished set of shards into `samples.merged.jsonl`.

  Checks that every shard of one sharding is complete and that no (id,
  sample) repeats; the merged order is (id, sample), so it does not depend
  on how many shards or hosts wrote it.

  Raises:
    FileNotFoundError / ValueError naming the missing or conflicting shards.
  """
  path = os.path.join(output_dir, MERGED)
  fileio.write_jsonl(path, read_samples(output_dir))
  return path
