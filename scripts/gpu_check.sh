#!/usr/bin/env bash
# The GPU checks of the torch backend in one run, for a lent GPU machine (no network there;
# its python3 has torch, numba and OpenCV): the CUDA tests, parity with the numba backend on
# real pairs, host<->GPU transfers, and the benchmark with the exact pass run eagerly (the
# authors' maths and launches) in the same run. With an earlier checkout in .gpu/old, its
# torch benchmark too (before/after on the same GPU).
#   bash scripts/gpu_check.sh OUT_DIR [IVIF_DIR]     (IVIF_DIR holds MSRS_test, RoadScene_test)
# DEVICE=cpu runs the same steps on a CPU (to try the script; transfers are skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/gpu}
IVIF=${2:-../shared/data/ivif}
DEVICE=${DEVICE:-cuda}
PY=$(command -v "${PYTHON:-python3}")  # absolute: the last step runs from .gpu/old
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() { echo "== $1"; }

step "machine"
nvidia-smi -L 2>/dev/null || true
$PY -c "import os, torch, numpy, numba; print('python', os.sys.version.split()[0], 'torch',
torch.__version__, 'CUDA', torch.version.cuda, 'numpy', numpy.__version__, 'numba',
numba.__version__, 'cores', os.cpu_count())" || status=1

step "tests (the CUDA ones skip without a GPU)"
$PY -m pytest -q -p no:cacheprovider -rs test/test_torch_backend.py test/test_fusion.py \
  test/test_torch_ops.py 2>&1 | tee "$OUT/pytest.txt" || status=1

step "parity on real pairs"
$PY benchmarks/backend_parity.py --device "$DEVICE" --exact-pairs 6 \
  --data "$IVIF/MSRS_test" "$IVIF/RoadScene_test" 2>&1 | tee "$OUT/parity.md" || status=1

if [ "$DEVICE" != cpu ]; then
  step "transfers"
  $PY benchmarks/gpu_transfer.py 2>&1 | tee "$OUT/transfer.txt" || status=1
fi

if [ "$DEVICE" != cpu ]; then
  step "where the GPU time goes (eager pass, per kernel)"
  $PY benchmarks/gpu_profile.py 2>&1 | tee "$OUT/profile.txt" || status=1
fi

step "benchmark"
$PY -m lutfuse_ros.cli bench --device "$DEVICE" --sizes ${SIZES:-640x480 1280x1024} \
  --backends numba torch torch:ops torch:eager --runs "${RUNS:-200}" --exact-runs "${EXACT_RUNS:-20}" \
  --ratio-rounds 0 --batch 16 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" || status=1

if [ -d .gpu/old/lutfuse_ros ] && [ -z "${SKIP_OLD:-}" ]; then
  step "benchmark of the earlier checkout in .gpu/old (before)"
  (cd .gpu/old && PYTHONPATH="$PWD" $PY -m lutfuse_ros.cli bench --device "$DEVICE" \
    --sizes ${SIZES:-640x480 1280x1024} --backends torch --runs "${OLD_RUNS:-50}" \
    --ratio-rounds 0) 2>&1 | tee "$OUT/bench_before.txt" || status=1
fi
exit $status
