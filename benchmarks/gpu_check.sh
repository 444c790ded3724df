#!/usr/bin/env bash
# GPU check, one short script (under 8 minutes) for a machine with an NVIDIA GPU and no network.
# Runs the GPU-marked tests, then the ingest and search benchmarks on the GPU, and prints the results.
# Usage (repository root, .venv already built with `make install`):  bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
echo "== GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY - <<'PYEOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
try:
    import faiss
    print("faiss", faiss.__version__, "gpus", faiss.get_num_gpus())
except ImportError:
    print("faiss: not installed")
PYEOF
if ! $PY -c "import av, faiss, scenedetect, sqlite_utils" 2>/dev/null; then
    # e.g. a lent machine that receives only the repository: the model's half of the check
    echo "== no video/index packages here: concept model on CUDA vs CPU only"
    timeout 120 $PY benchmarks/gpu_model_check.py --json
    exit
fi
echo "== GPU tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
echo "== ingest speed (GPU model, 1 repeat)"
timeout 240 $PY benchmarks/ingest_speed.py --repeat 1 --json
echo "== search at 200k shots"
timeout 200 $PY benchmarks/search_scale.py --shots 200000 --queries 100 --json
