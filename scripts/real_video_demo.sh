#!/usr/bin/env bash
# The real-video path end to end on a CPU, ~7 minutes (2 of VAE training, 2 of DiT training):
# natural-looking long videos (a virtual camera over matplotlib's real photograph and terrain,
# mixed aspect ratios and frame rates) -> a manifest of shot timestamps -> `nanosora clips` ->
# VAE on bucketed batches (random windows and crops) -> multi-shape latent cache -> DiT on
# token-budget batches -> sample GIFs. Nothing is downloaded; no video is committed.
#
#   bash scripts/real_video_demo.sh [OUT]      # OUT defaults to runs/real (must not hold runs)
set -euo pipefail
OUT=${1:-runs/real}
THREADS=${THREADS:-1}
BUCKETS=(17x64x112 17x64x64 17x48x64 17x112x64 9x64x112 9x64x64 9x48x64 9x112x64 1x64x64)

python -m nanosora.video.footage --out "$OUT/long" --videos 16
nanosora clips "$OUT/long/manifest.parquet" --out-dir "$OUT/clips"
nanosora train vae --config configs/real_vae.yaml data.manifest="$OUT/clips/manifest.parquet" \
    train.out_dir="$OUT/vae" train.threads="$THREADS"
nanosora cache --manifest "$OUT/clips/manifest.parquet" --vae "$OUT/vae" -o "$OUT/cache" \
    --num-frames 17 --size 64 --crop center --caption random ${BUCKETS[@]/#/--bucket }
nanosora train dit --config configs/real_dit.yaml cache="$OUT/cache" vae="$OUT/vae" \
    train.out_dir="$OUT/dit" train.threads="$THREADS"
ls "$OUT/vae/samples" "$OUT/dit/samples"
