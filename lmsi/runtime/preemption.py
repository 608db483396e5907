"""Preemption: on SIGTERM, finish the step in flight, checkpoint, exit 75.

A spot / preemptible TPU VM gets SIGTERM and about 30 seconds. A loop that
holds a `Watch` asks `watch.should_stop(step)` after every step; when it
says so, the loop saves a checkpoint at that step and raises `Preempted`,
whose exit code (`EXIT_PREEMPTED`, 75: sysexits' EX_TEMPFAIL, "try again")
tells a launcher to resume, not to report a failure.

Two paths, one per mode:
  * one process: the watch installs its own SIGTERM handler, which only
    sets a flag (the step in flight finishes), and restores the previous
    handler when the watch closes;
  * several processes (`jax.distributed` initialized): JAX's own
    preemption notifier, installed by `jax.distributed.initialize`, is
    left alone, and every host asks
    `multihost_utils.reached_preemption_sync_point(step)`, which is true on
    all hosts at the same step once any host got SIGTERM, so they all save
    that step.
A SIGTERM that arrives outside a watch (compile, restore, data loading
before the loop) keeps Python's default: the process ends at once, and
since every file is written atomically nothing half-written is left.
"""

from __future__ import annotations

import signal
import threading

from absl import logging
import jax

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: resume, do not give up


class Preempted(SystemExit):
  """Raised after the checkpoint of a preempted loop is saved."""

  def __init__(self, step: int, where: str):
    super().__init__(EXIT_PREEMPTED)
    self.step = step
    self.where = where

  def __str__(self) -> str:
    return (f'preempted (SIGTERM): {self.where} saved at step {self.step}; '
            f'exit {EXIT_PREEMPTED}, rerun the same command to resume')


class Watch:
  """Whether a SIGTERM asked this run to stop; a context manager."""

  def __init__(self):
    self.multihost = jax.process_count() > 1
    self._flag = threading.Event()
    self._previous = None

  def __enter__(self) -> Watch:
    if not self.multihost and (threading.current_thread()
                               is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    logging.warning('SIGTERM: finishing the step in flight, then saving')
    self._flag.set()

  def should_stop(self, step: int) -> bool:
    """True once preempted, at the same `step` on every host."""
    if self.multihost:
      from jax.experimental import (  # pylint: disable=g-import-not-at-top
          multihost_utils)
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self._flag.is_set()
