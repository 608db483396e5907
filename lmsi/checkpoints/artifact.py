"""A small model shipped like a pretrained checkpoint: safetensors + config.

An artifact directory holds
  model.safetensors   the parameters, flat names "block_0/attn/q/kernel"
  vocab.json          the tokenizer the model was trained with
  artifact.json       the `DecoderConfig`, the sha256 of both files above and
                      the training manifest (data, schedule, steps, evals)

`load` recomputes the digests and refuses a file that does not match, so a
demo that starts from a committed base is known to start from that base.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
from safetensors import numpy as st_numpy

from lmsi.model import decoder as decoder_lib
from lmsi.runtime import manifests
from lmsi.runtime import fileio

PARAMS_FILE = 'model.safetensors'
VOCAB_FILE = 'vocab.json'
META_FILE = 'artifact.json'
_SEP = '/'


@dataclasses.dataclass(frozen=True)
class Artifact:
  model_config: decoder_lib.DecoderConfig
  params: Any
  vocab_path: str
  meta: dict


def is_artifact(path: str) -> bool:
  return os.path.isfile(os.path.join(path, META_FILE))


def _flatten(params: Any) -> dict[str, np.ndarray]:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = _SEP.join(str(getattr(k, 'key', k)) for k in path)
    flat[name] = np.asarray(jax.device_get(leaf))
  return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split(_SEP)
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def save(out_dir: str, *, params: Any,
         model_config: decoder_lib.DecoderConfig, vocab_file: str,
         manifest: dict) -> str:
  """Writes an artifact atomically (temp dir + rename); returns its digest."""
  tmp = out_dir.rstrip('/') + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  # Sorted names and no metadata: the same params give the same bytes.
  flat = dict(sorted(_flatten(params).items()))
  st_numpy.save_file(flat, os.path.join(tmp, PARAMS_FILE))
  shutil.copyfile(vocab_file, os.path.join(tmp, VOCAB_FILE))
  meta = {
      'model_config': dataclasses.asdict(model_config),
      'num_params': int(sum(v.size for v in flat.values())),
      'sha256': {f: manifests.file_sha256(os.path.join(tmp, f))
                 for f in (PARAMS_FILE, VOCAB_FILE)},
      'manifest': manifest,
  }
  fileio.write_json(os.path.join(tmp, META_FILE), meta)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return meta['sha256'][PARAMS_FILE]


def read_meta(path: str) -> dict:
  meta_path = os.path.join(path, META_FILE)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f'{path!r} is not a model artifact: no {META_FILE} '
                            f'(expected {PARAMS_FILE}, {VOCAB_FILE}, '
                            f'{META_FILE}; build one with `make demo-base`)')
  with open(meta_path, encoding='utf-8') as f:
    return json.load(f)


def verify(path: str) -> dict:
  """Checks both files against the digests in artifact.json; returns meta.

  Raises:
    ValueError: naming the file whose sha256 differs.
  """
  meta = read_meta(path)
  for name, want in meta['sha256'].items():
    got = manifests.file_sha256(os.path.join(path, name))
    if got != want:
      raise ValueError(f'{os.path.join(path, name)}: sha256 {got} does not '
                       f'match {want} in {META_FILE}; the artifact was '
                       'changed or truncated (rebuild it with `make '
                       'demo-base` or restore it from git)')
  return meta


def load(path: str) -> Artifact:
  """Verifies and loads an artifact; params are float32 numpy trees."""
  meta = verify(path)
  cfg = decoder_lib.DecoderConfig(**meta['model_config'])
  flat = st_numpy.load_file(os.path.join(path, PARAMS_FILE))
  params = _unflatten(flat)
  want = jax.eval_shape(lambda: decoder_lib.init_params(cfg, 0)[0])
  want_shapes = jax.tree_util.tree_map(lambda x: tuple(x.shape), want)
  got_shapes = jax.tree_util.tree_map(lambda x: tuple(x.shape), params)
  if want_shapes != got_shapes:
    raise ValueError(f'{os.path.join(path, PARAMS_FILE)} does not match the '
                     f'model_config in {META_FILE}')
  params = jax.tree_util.tree_map(jax.numpy.asarray, params)
  return Artifact(model_config=cfg, params=params,
                  vocab_path=os.path.join(path, VOCAB_FILE), meta=meta)
