#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one short run (about 8 minutes on an H100):
#   OUT=gpu-results bash benchmarks/gpu_check.sh
# Writes JSON per benchmark into $OUT; each step is bounded so one slow step leaves the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
# UMMGAT step: batch 8, 176x176, 6 + 6 lesion domains; fp32, bf16, bf16 + compile
timeout 150 python benchmarks/bench_train.py --device cuda --no-amp --iters 20 --out "$OUT/train_fp32.json"
timeout 150 python benchmarks/bench_train.py --device cuda --amp --iters 20 --out "$OUT/train_bf16.json"
timeout 240 python benchmarks/bench_train.py --device cuda --amp --compile --iters 30 --no-flops \
    --out "$OUT/train_bf16_compiled.json"
# harmonize: seconds per generated volume and per case, full size
timeout 120 python benchmarks/bench_harmonize.py --device cuda --cases 4 --batch-size 64 \
    --json "$OUT/harmonize.json"
ls -l "$OUT"
