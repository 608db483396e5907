r"""Local launcher: one command as N processes here, like the hosts of a pod.

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \
    python -m lmsi.sample --gin_file=gin/runs/sample.gin --gin.X=...

Each process gets LMSI_COORDINATOR_ADDRESS=localhost:<free port>,
LMSI_NUM_PROCESSES=N, LMSI_PROCESS_ID=i (read by `lmsi.runtime.distributed`),
JAX_PLATFORMS=cpu and M fake CPU devices, so a pod run is rehearsed on a
laptop with the code path a TPU pod takes. A leading `python` means the
interpreter that runs this script. Output lines are prefixed with `[p<i>]`.
If one process fails the others are stopped, and the exit code is that of
the first failure.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

_DEVICE_FLAG = re.compile(r'--xla_force_host_platform_device_count=\S*')


def free_port() -> int:
  """A TCP port on localhost that is free now."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def process_env(base: Mapping[str, str], *, coordinator: str,
                num_processes: int, process_id: int,
                devices_per_process: int) -> dict[str, str]:
  """The environment of process `process_id`: `base` plus the run's wiring."""
  xla_flags = _DEVICE_FLAG.sub('', base.get('XLA_FLAGS', '')).split()
  xla_flags.append(
      f'--xla_force_host_platform_device_count={devices_per_process}')
  return {**base,
          'LMSI_COORDINATOR_ADDRESS': coordinator,
          'LMSI_NUM_PROCESSES': str(num_processes),
          'LMSI_PROCESS_ID': str(process_id),
          'XLA_FLAGS': ' '.join(xla_flags),
          'JAX_PLATFORMS': 'cpu',
          # Every process shares this machine's disk: local output paths
          # are fine (lmsi.runtime.gin_flags.check_shared_output).
          'LMSI_SHARED_DISK': '1',
          'PYTHONUNBUFFERED': '1'}


def _relay(i: int, stream: TextIO, out: TextIO, lock: threading.Lock) -> None:
  for line in stream:
    with lock:
      out.write(f'[p{i}] {line}')
      out.flush()


def run(command: Sequence[str], *, num_processes: int,
        devices_per_process: int = 1, port: int | None = None,
        out: TextIO = sys.stdout, poll_seconds: float = 0.05) -> int:
  """Runs `command` as `num_processes` processes; returns the exit code.

  0 if all succeed; otherwise the code of the first process seen failing,
  after stopping the others.
  """
  if num_processes < 1 or devices_per_process < 1:
    raise ValueError('num_processes and devices_per_process must be >= 1')
  if command[0] in ('python', 'python3'):  # The interpreter running this.
    command = [sys.executable, *command[1:]]
  coordinator = f'localhost:{port or free_port()}'
  lock = threading.Lock()
  procs, relays = [], []
  try:
    for i in range(num_processes):
      env = process_env(os.environ, coordinator=coordinator,
                        num_processes=num_processes, process_id=i,
                        devices_per_process=devices_per_process)
      p = subprocess.Popen(list(command), env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      procs.append(p)
      relays.append(threading.Thread(target=_relay,
                                     args=(i, p.stdout, out, lock)))
      relays[-1].start()
    while True:
      codes = [p.poll() for p in procs]
      code = next((c for c in codes if c), 0)
      if code or None not in codes:
        break
      time.sleep(poll_seconds)
  finally:
    _stop(procs)
    for t in relays:
      t.join()
  if code:
    with lock:
      out.write(f'[local] a process exited with {code}; stopped the rest\n')
  return code


def _stop(procs: Sequence[subprocess.Popen], grace: float = 10.0) -> None:
  for p in procs:
    if p.poll() is None:
      p.terminate()
  deadline = time.monotonic() + grace
  for p in procs:
    try:
      p.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def main(argv: Sequence[str]) -> int:
  argv = list(argv)
  if '--' not in argv:
    raise SystemExit('usage: local.py [flags] -- COMMAND...')
  cut = argv.index('--')
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=1)
  parser.add_argument('--port', type=int, help='coordinator port; default any')
  args = parser.parse_args(argv[:cut])
  command = argv[cut + 1:]
  if not command:
    raise SystemExit('local.py: no command after --')
  return run(command, num_processes=args.num_processes,
             devices_per_process=args.devices_per_process, port=args.port)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
