#!/bin/bash
# Pretraining variants of the "Does the pretraining help?" tables, side by side on one machine
# (one GPU runs all of them at once; they are bound by video decoding, not by the GPU):
#   vjepa        V-JEPA as published (multiblock masks, feature loss)
#   pixels       the same ViT, masks and data reconstructing the masked pixels
#   vjepa_small  V-JEPA with mask=small_objects
#   vc           V-JEPA + VICReg's variance / covariance terms on the context tokens
#   vc_small     vc with mask=small_objects
# Usage: DATA=runs/build/push/data/episodes OUT=runs/variants STEPS=3000 BATCH=64 WORKERS=5 \
#          bash benchmarks/pretrain_variants.sh [VARIANT ...]
# Then score them on held-out episodes with python -m jepa_world.probe (+compare.NAME=OUT/NAME).
set -u
DATA=${DATA:?give DATA=a folder of episode videos}
OUT=${OUT:-runs/variants}
VARIANTS=("$@")
[ ${#VARIANTS[@]} -eq 0 ] && VARIANTS=(vjepa pixels vjepa_small vc vc_small)
COMMON=(data.paths=["$DATA"] device="${DEVICE:-auto}" seed="${SEED:-0}" train.tensorboard=false
        train.steps="${STEPS:-3000}" train.batch_size="${BATCH:-64}"
        train.num_workers="${WORKERS:-5}" train.checkpoint_every=250 train.log_every=50)
VC=(train.variance_weight=1.0 train.covariance_weight=0.04)
settings() {
    case $1 in
        vjepa) ;;
        pixels) echo objective=pixels ;;
        vjepa_small) echo mask=small_objects ;;
        vc) echo "${VC[@]}" ;;
        vc_small) echo mask=small_objects "${VC[@]}" ;;
        *) echo "unknown variant $1 (vjepa, pixels, vjepa_small, vc, vc_small)" >&2; return 1 ;;
    esac
}
for name in "${VARIANTS[@]}"; do settings "$name" > /dev/null || exit 2; done
mkdir -p "$OUT"
for name in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2046
    python -m jepa_world.pretrain "${COMMON[@]}" out_dir="$OUT/$name" $(settings "$name") \
        > "$OUT/$name.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
for name in "${VARIANTS[@]}"; do echo "$name: $(tail -n 2 "$OUT/$name.log" | head -n 1)"; done
exit $status
