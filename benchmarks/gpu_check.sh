#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one run of at most 8 minutes (the timeouts add up
# to 470 s):   OUT=gpu-results bash benchmarks/gpu_check.sh
# Writes JSON per benchmark into $OUT; each step is bounded so one slow step leaves the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
# UMMGAT step, batch 8, 176x176, 6 + 6 lesion domains with LAM. FLOPs and parameters of both
# presets (counted on the meta device, seconds), then each preset in fp32, bf16, bf16 + compile
T="python benchmarks/bench_train.py --device cuda --no-flops"
timeout 30 python benchmarks/bench_train.py --no-timing --out "$OUT/train_counts.json"
timeout 75 $T --preset fast --mode fp32 --mode bf16 --iters 20 --out "$OUT/train_fast.json"
timeout 90 $T --preset fast --mode compile --iters 30 --out "$OUT/train_fast_compiled.json"
timeout 90 $T --preset paper --mode fp32 --mode bf16 --iters 10 --out "$OUT/train_paper.json"
timeout 130 $T --preset paper --mode compile --iters 20 --out "$OUT/train_paper_compiled.json"
# harmonize with the paper preset: seconds per generated 155x176x176 volume
timeout 55 python benchmarks/bench_harmonize.py --device cuda --preset paper --cases 2 \
    --batch-size 64 --json "$OUT/harmonize_paper.json"
ls -l "$OUT"
