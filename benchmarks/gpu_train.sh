#!/usr/bin/env bash
# One GPU session for issue 4 (and the model half of issue 6's GPU check), sized for a
# ~9-minute lease on a machine with PyTorch, timm, scikit-learn and scikit-image but none
# of the video/index packages, and no ../shared:
#   1. default-model candidate A: FT3-ex1-512 on VOC train + Intel + Scene-15 (full fine-tune)
#   2. the concept model on CUDA against the CPU (scores, keyframes/s)
#   3. the strategy study (benchmarks/strategies.py, with the k × e grid)
#   4. default-model candidate B (224 px), if time is left
# Inputs come from `python benchmarks/gpu_pack.py --out .gpu` (WebP copies of the training
# photos + ImageNet weights); results go to $OUT (bundles as .tar). Evaluation of the
# candidates on the original test photos happens afterwards on the CPU machine.
#   OUT=runs/gpu bash benchmarks/gpu_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}; PACK=${PACK:-.gpu}; PY=${PY:-python3}
mkdir -p "$OUT"
DATA=/tmp/vidconcept-pack  # the photos travel as one archive (per-file overheads count against the limit)
mkdir -p "$DATA" && tar -xzf "$PACK/pack.tar.gz" -C "$DATA" || exit 1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
W=$(( $(nproc) - 1 ))
T0=$SECONDS
log() { echo "== [$(( SECONDS - T0 )) s] $*" | tee -a "$OUT/log.txt"; }
run() { "$@" 2>&1 | grep -v -E "it/s|s/it|Warning" | tee -a "$OUT/log.txt"; }

log "machine"
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run $PY -c "import torch, timm, sklearn, PIL.features as f; print('torch', torch.__version__, 'timm', timm.__version__, 'sklearn', sklearn.__version__, 'webp', f.check('webp'), 'cuda', torch.cuda.is_available())"

candidate() {  # name image_size epochs
    log "default candidate $1: ${2}px, $3 epochs"
    run timeout "$4" $PY benchmarks/strategies_default.py --data "$DATA" --weights "$PACK/lite0.safetensors" \
        --out "runs/$1" --strategy ft3-ex1-512 --epochs "$3" --image-size "$2" --crop-pct 1.0 \
        --cache-stages 0 --workers "$W" --batch-size 64 --lr 0.01 --lr-mult 0.1 --no-eval
    [ -f "runs/$1/weights.safetensors" ] && tar -C runs -cf "$OUT/$1.tar" "$1" && log "saved $OUT/$1.tar"
}

candidate default-288 288 15 200

log "concept model: CUDA vs CPU"
[ -d runs/default-288 ] && run timeout 90 $PY benchmarks/gpu_model_check.py --model runs/default-288 --json

log "strategy study"
run timeout 330 $PY benchmarks/strategies.py --voc "$DATA/voc2007" --weights "$PACK/lite0.safetensors" \
    --out "$OUT" --scratch /tmp/strategies --epochs 8 --grid --grid-epochs 2 4 8 --workers "$W" --batch-size 64

left=$(( 540 - (SECONDS - T0) ))
[ "$left" -gt 90 ] && candidate default-224 224 15 "$left"
log "done"
