#!/usr/bin/env bash
# The GPU checks in one run, for a session that is lent a CUDA machine (the device tool's `run`),
# sized to finish in about 8 of its 10 minutes on an H100:
#   1. tests/test_cuda.py (cache = recompute on the GPU, bf16 resumes exactly, checkpoints move
#      between the GPU and the CPU);
#   2. benchmarks/gpu_check.py: the trainer in fp32/bf16 with and without compile, the side-by-side
#      against the GPT-2-style baseline at the shakespeare-char and GPT-2-small shapes, sampling.
#
#   bash benchmarks/gpu_session.sh prepare   # here, with network: the wheels the GPU image lacks and
#                                            # tiny Shakespeare, into .gpu/ (git-ignored)
#   bash benchmarks/gpu_session.sh run       # there: device run with carry [".gpu"]; logs and JSON to $OUT
#   bash benchmarks/gpu_session.sh run --dry-run   # here: the same steps on the CPU (the tests skip)
#
# The GPU image has torch, pytest and transformers but not platformdirs or tomli-w; the corpus
# beside the checkout (../shared/data) does not travel, so a copy of tiny Shakespeare goes in .gpu/.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
    mkdir -p .gpu/whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .gpu/whl platformdirs tomli-w || exit 1
    cp "${DATA:-../shared/data/tinyshakespeare/input.txt}" .gpu/input.txt || exit 1
    du -sh .gpu
    ;;
run)
    shift
    OUT="${OUT:-benchmarks/results}"
    mkdir -p "$OUT"
    if [ "${1:-}" != "--dry-run" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
        export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
    fi
    export PYTHONUNBUFFERED=1
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
    # -o addopts= : no xdist workers (one GPU); -p no:cacheprovider: nothing written into the tree
    timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts= -m cuda -rs tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
    tests=${PIPESTATUS[0]}
    timeout 420 python3 benchmarks/gpu_check.py --data .gpu/input.txt --out "$OUT/gpu_check.json" "$@" 2>&1 \
        | tee "$OUT/gpu_check.log"
    check=${PIPESTATUS[0]}
    echo "tests exit $tests, gpu_check exit $check"
    [ "$tests" = 0 ] && [ "$check" = 0 ]
    ;;
*)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
