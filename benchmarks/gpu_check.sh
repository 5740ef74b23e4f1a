#!/usr/bin/env bash
# The GPU checks, as one prepared script for a machine with an NVIDIA GPU (CI and the development
# machines have none): the speed benchmark at 1k images on cuda, a 1-GPU torchrun fit over NCCL, and
# bf16 training of a ViT and a ConvNeXt (random weights, the default recipe on synthetic-size data).
# Writes benchmarks/results/gpu.md. Run from the repository root after `bash scripts/setup.sh`.
set -euo pipefail
OUT=benchmarks/results/gpu.md
PY=.venv/bin/python
{
  echo "GPU checks (benchmarks/gpu_check.sh), $(date -u +%Y-%m-%d)"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/device: /'
  echo
  echo '## speed.py, 1,000 images, cuda'
  $PY benchmarks/speed.py --sizes 1000 --out /tmp/gpu_speed.jsonl | tail -12
  echo
  echo '## torchrun, 1 GPU, NCCL'
  $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m tunelab fit examples/default.yaml \
    --set run.name=gpu-torchrun --set run.dir=/tmp/gpu-runs --set run.progress=false 2>&1 | grep -E "test:|processes|error" || true
  echo
  echo '## bf16 training, ViT and ConvNeXt (random weights, 64 px)'
  for bb in vit_tiny_patch16_224 convnext_atto; do
    $PY -m tunelab fit examples/default.yaml --set model.backbone=$bb --set model.pretrained=false \
      --set run.precision=bf16 --set run.name=gpu-$bb --set run.dir=/tmp/gpu-runs --set run.progress=false \
      2>&1 | grep -E "^.*test: accuracy|stage 2 epoch 16" | sed "s/^/$bb: /" || true
  done
} | tee "$OUT"
