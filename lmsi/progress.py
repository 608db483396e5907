"""Progress lines with rate and ETA for long stages."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  if seconds >= 60:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds}s'


class Progress:
  """Prints `desc: done/total unit (pct) rate unit/s ETA ...` at most every
  `interval` seconds, and once at the end."""

  def __init__(self, desc: str, total: int, unit: str = 'items', *,
               start: int = 0, interval: float = 10.0, stream=None):
    self.desc, self.total, self.unit = desc, total, unit
    self.done = self._start = start
    self.interval = interval
    self.stream = stream or sys.stdout
    self._t0 = self._last = time.monotonic()

  def update(self, n: int = 1, extra: str = '') -> None:
    self.done += n
    now = time.monotonic()
    if now - self._last >= self.interval or self.done >= self.total:
      self._last = now
      self.stream.write(self.line(now, extra) + '\n')
      self.stream.flush()

  def line(self, now: float | None = None, extra: str = '') -> str:
    now = time.monotonic() if now is None else now
    elapsed = max(now - self._t0, 1e-9)
    rate = (self.done - self._start) / elapsed
    left = (self.total - self.done) / rate if rate > 0 else float('inf')
    eta = _duration(left) if left != float('inf') else '?'
    pct = 100.0 * self.done / max(self.total, 1)
    text = (f'{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%) '
            f'{rate:.1f} {self.unit}/s ETA {eta}')
    return f'{text} {extra}'.rstrip()

  @property
  def elapsed(self) -> float:
    return time.monotonic() - self._t0
