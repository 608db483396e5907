"""Stop strings: where a sampled path ends, found inside the decode loop.

A stop string may span tokens ("\\n" then "\\n"), so the loop keeps, per
slot and stop string, how much of the string the path's last bytes match:
`stop_tables` precomputes the next state and whether it completes the stop
for every (state, token). Tables are cached per vocabulary fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmsi.vocab import base as vocab_base


def stop_tables(token_bytes: Sequence[bytes], stop_strings: Sequence[str],
                vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-token automata that find stop strings across token boundaries.

  For each stop string (KMP over bytes, state = length of the matched
  prefix), `next[i, q, t]` is the state after emitting token t in state q and
  `hit[i, q, t]` whether that token completes stop string i. Works for any
  tokenizer: BPE may emit "\\n\\n" as one token or two.

  Returns:
    (int32 next, bool hit), each [num_stops, max_len, vocab_size].
  """
  stops = [s.encode('utf-8') for s in stop_strings]
  longest = max([len(s) for s in stops] + [1])
  nxt = np.zeros((len(stops), longest, vocab_size), np.int32)
  hit = np.zeros((len(stops), longest, vocab_size), bool)
  for i, stop in enumerate(stops):
    fail = [0] * (len(stop) + 1)  # KMP failure function
    for j in range(1, len(stop)):
      k = fail[j]
      while k and stop[j] != stop[k]:
        k = fail[k]
      fail[j + 1] = k + 1 if stop[j] == stop[k] else 0
    def step(q: int, byte: int) -> int:
      while q and stop[q] != byte:
        q = fail[q]
      return q + 1 if stop[q] == byte else 0
    for t in range(vocab_size):
      piece = token_bytes[t] if t < len(token_bytes) else b''
      for q0 in range(len(stop)):
        q = q0
        for byte in piece:
          q = step(q, byte)
          if q == len(stop):
            hit[i, q0, t] = True
            break
        nxt[i, q0, t] = 0 if hit[i, q0, t] else q
  return nxt, hit


_CACHE: dict[tuple[str, tuple[str, ...], int],
             tuple[np.ndarray, np.ndarray]] = {}
_CACHE_SIZE = 16  # (vocabulary, stop strings) pairs kept; oldest dropped


def tables_for(vocab: vocab_base.Vocabulary, stop_strings: Sequence[str],
               vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`stop_tables` of a vocabulary, computed once per (vocabulary
  fingerprint, stop strings, model vocabulary size) in this process."""
  key = (vocab.fingerprint(), tuple(stop_strings), vocab_size)
  if key not in _CACHE:
    if len(_CACHE) >= _CACHE_SIZE:
      _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = stop_tables(vocab.token_bytes(), key[1], vocab_size)
  return _CACHE[key]


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
  """`text` up to the first occurrence of any stop string."""
  cut = len(text)
  for stop in stop_strings:
    i = text.find(stop)
    if i != -1:
      cut = min(cut, i)
  return text[:cut]
