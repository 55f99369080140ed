#!/usr/bin/env bash
# The scenes recipe end to end (docs/training.md#the-scenes-recipe-stage-by-stage), resumable:
# run it again after an interruption and it skips finished stages and resumes the one that
# stopped. Each stage's log is in $ROOT/logs/. Usage: scripts/scenes_recipe.sh [extra overrides of
# the first DiT stage]
set -euo pipefail
cd "$(dirname "$0")/.."
NANOSORA=${NANOSORA:-.venv/bin/nanosora}
ROOT=${ROOT:-runs}
mkdir -p "$ROOT/logs"

stage() {  # stage NAME DONE_MARKER_DIR COMMAND...: runs COMMAND unless NAME finished before
    local name=$1 dir=$2
    shift 2
    if [[ -f "$dir/.recipe_done" ]]; then
        echo "[$name] done"
        return
    fi
    echo "[$name] $(date -u +%H:%M:%S) $*"
    "$@" >> "$ROOT/logs/$name.log" 2>&1
    mkdir -p "$dir" && touch "$dir/.recipe_done"
}

train() {  # train KIND CONFIG OUT_DIR [overrides]: --resume when a checkpoint is there
    local kind=$1 config=$2 out=$3
    shift 3
    local resume=()
    [[ -f "$out/state.pt" ]] && resume=(--resume)
    stage "$(basename "$out")" "$out" "$NANOSORA" train "$kind" --config "$config" "${resume[@]}" "$@"
}

stage data_train "$ROOT/scenes/train" "$NANOSORA" scenes --out "$ROOT/scenes/train" --num 8000 --split train
stage data_heldout "$ROOT/scenes/heldout" \
    "$NANOSORA" scenes --out "$ROOT/scenes/heldout" --num 256 --split heldout --seed 1
stage data_train40k "$ROOT/scenes/train40k" \
    "$NANOSORA" scenes --out "$ROOT/scenes/train40k" --num 40000 --split train
train vae configs/scenes_vae_s4.yaml "$ROOT/scenes_vae_s4"
stage cache "$ROOT/scenes/cache_s4_cl4" "$NANOSORA" cache \
    --manifest "$ROOT/scenes/train40k/manifest.parquet" --vae "$ROOT/scenes_vae_s4" \
    -o "$ROOT/scenes/cache_s4_cl4" --clauses 4
train dit configs/scenes_dit.yaml "$ROOT/scenes_dit" "$@"
train dit configs/scenes_dit_masks.yaml "$ROOT/scenes_dit_masks"
# The benchmark subset of every snapshot the DiT kept (snapshot_every): the points of the
# compute plot (scripts/scenes_compute_plot.py).
for snap in "$ROOT"/scenes_dit/snapshots/step_*; do
    [[ -d $snap ]] || continue
    stage "bench_$(basename "$snap")" "$snap/bench" \
        "$NANOSORA" bench-scenes --model "$snap" -o "$snap/bench" --per-group 8 --seeds 1
done
# The finished model (stage 2's pipeline) on the same subset.
stage bench_final "$ROOT/scenes_dit_masks/pipeline/bench" "$NANOSORA" bench-scenes \
    --model "$ROOT/scenes_dit_masks/pipeline" -o "$ROOT/scenes_dit_masks/pipeline/bench" \
    --per-group 8 --seeds 1
