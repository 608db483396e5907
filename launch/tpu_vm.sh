#!/usr/bin/env bash
# Runs on a TPU VM worker; launch/tpu_vm.py sends it to every worker with
# `gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`:
#   bash launch/tpu_vm.sh lmsi.sample --gin_file=... --gin.X=...
# The first call creates .venv (Python 3.11, requirements.lock, lmsi[tpu]);
# with no arguments it stops there. Then it runs `python -m "$@"` with
# LMSI_DISTRIBUTED=auto, so the hosts of the slice join one JAX run
# (lmsi/runtime/distributed.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${LMSI_PYTHON:-python3.11}"
if [[ ! -f .venv/.installed-tpu ]]; then
  if ! command -v "$PY" >/dev/null; then  # TPU VM images ship Python 3.10.
    # A freshly booted VM runs unattended-upgrades: wait for dpkg's lock
    # instead of failing on it.
    APT=(sudo DEBIAN_FRONTEND=noninteractive apt-get
         -o DPkg::Lock::Timeout=600 -qq)
    "${APT[@]}" update
    "${APT[@]}" install -y "$PY" "$PY-venv"
  fi
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check -e '.[tpu]'
  touch .venv/.installed-tpu
fi
if [[ $# -eq 0 ]]; then
  exit 0
fi
export LMSI_DISTRIBUTED="${LMSI_DISTRIBUTED:-auto}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
exec .venv/bin/python -m "$@"
