#!/usr/bin/env bash
# The paper's two claims in miniature (pipelines/README.md; not in CI), each a pipeline file run
# by lvd-run in one work folder:
#   curation      claim-curation.ini, claim-curation-train.ini, claim-random.ini: model A
#                 pretrained on the curated set of a pool mixing Fashion-MNIST with off-domain
#                 images, model B on a random pool sample of the same size, same settings and
#                 steps; k-NN on Fashion-MNIST test images
#   distillation  claim-distill.ini (after the curation claim): a small student distilled from
#                 A against the same small architecture trained from scratch, same steps
#
#   bash pipelines/claims.sh [curation|distill|all]    (default all)
#
# Environment: LVD_CLAIM_DIR (work folder, default ./claims-out), LVD_CLAIM_STEPS (steps of
# every training, default 200), LVD_CLAIM_MINUTES (a safety budget per training run, default
# 30: a run it stops is continued by the next claims.sh), LVD_CLAIM_POOL_SIZE (Fashion-MNIST
# images in the pool, default 3000), LVD_CLAIM_ICONS (an icon theme whose 48x48 and 64x64 PNG
# folders are the off-domain images, default /usr/share/icons/Adwaita),
# LVD_DEMO_SETTINGS (default pipelines/demo-settings.ini), LVD_DEMO_CROPS_PER_PHOTO (crops of
# each MATE photo in the pool, default 25), LVD_FMNIST, LVD_MATE, LVD_BUILD as in demo.sh.
# Ends with the k-NN table of every model (also claims.txt in the work folder).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${LVD_BUILD:-$root/build}" 2>/dev/null && pwd) || {
    echo "claims: no build folder ${LVD_BUILD:-$root/build}" >&2
    exit 1
}
what=${1:-all}
case "$what" in curation | distill | all) ;; *)
    echo "usage: bash pipelines/claims.sh [curation|distill|all]" >&2
    exit 2
    ;;
esac
say() { printf '[claims] %s\n' "$*"; }
die() { printf '[claims] error: %s\n' "$*" >&2; exit 1; }
command -v sqlite3 >/dev/null || die "the sqlite3 command is needed"

stage_path=$(find "$build" -mindepth 2 -maxdepth 3 -type f -name 'lvd-*' -perm -u+x \
    -not -path "$build/tests/*" -not -path "$build/bench/*" -printf '%h\n' | sort -u | paste -sd: -)
export LVD_STAGE_PATH=$stage_path
lvd_run=$build/curate/pipeline/lvd-run
[ -x "$lvd_run" ] || die "lvd-run is not built in $build"

export LVD_FMNIST=${LVD_FMNIST:-/usr/share/datasets/fashion-mnist}
export LVD_MATE=${LVD_MATE:-/usr/share/backgrounds/mate}
export LVD_DEMO_CROPS_PER_PHOTO=${LVD_DEMO_CROPS_PER_PHOTO:-25}
export LVD_CLAIM_STEPS=${LVD_CLAIM_STEPS:-200}
export LVD_CLAIM_MINUTES=${LVD_CLAIM_MINUTES:-30}
export LVD_CLAIM_POOL_SIZE=${LVD_CLAIM_POOL_SIZE:-3000}
export LVD_DEMO_SETTINGS=$(realpath -- "${LVD_DEMO_SETTINGS:-$root/pipelines/demo-settings.ini}")
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export LVD_CLAIM_ICONS=${LVD_CLAIM_ICONS:-/usr/share/icons/Adwaita}

work=${LVD_CLAIM_DIR:-$PWD/claims-out}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -e "$work/.gitignore" ] || printf '*\n' >"$work/.gitignore"
cd "$work"

[ -d "$LVD_CLAIM_ICONS/48x48" ] && [ -d "$LVD_CLAIM_ICONS/64x64" ] ||
    die "LVD_CLAIM_ICONS=$LVD_CLAIM_ICONS: no 48x48 and 64x64 folders (package adwaita-icon-theme)"

pipeline() {
    say "running $root/pipelines/$1"
    "$lvd_run" "$root/pipelines/$1"
}

if [ "$what" != distill ]; then
    pipeline claim-curation.ini
    calibrated=$(sqlite3 -readonly claim.db "SELECT printf('%.4f', CASE
            WHEN json_extract(counts, '\$.separable') THEN json_extract(counts, '\$.threshold')
            ELSE min(0.9999, max(json_extract(counts, '\$.threshold'),
                                 json_extract(counts, '\$.nearest_other.p95'))) END)
        FROM v_runs WHERE stage = 'calibrate' AND status = 'ok'
          AND json_extract(params, '\$.model') = 'claim-curator' ORDER BY id DESC LIMIT 1")
    [ -n "$calibrated" ] || die "no calibration recorded"
    export LVD_CLAIM_THRESHOLD=${LVD_CLAIM_THRESHOLD:-$calibrated}
    say "dedup and decontamination at $LVD_CLAIM_THRESHOLD (calibrated $calibrated)"
    pipeline claim-curation-train.ini

    # The random sample: as many pool images as the curated set holds, by a fixed hash of the
    # image id (Knuth's multiplicative hash), copied with their class folder.
    size=$(sqlite3 -readonly claim.db \
        "SELECT COUNT(DISTINCT image_id) FROM v_curated WHERE model = 'claim-curator'")
    say "curated set: $size images; a random pool sample of the same size in data/random"
    if [ ! -f data/random.done ] || [ "$(cat data/random.done)" != "$size" ]; then
        rm -rf data/random
        mkdir -p data/random
        sqlite3 -readonly -separator $'\t' claim.db \
            "SELECT id, url, COALESCE(label, 'none') FROM v_images
             WHERE source = 'pool' AND status = 'ok'
             ORDER BY (id * 2654435761) % 4294967296, id LIMIT $size" |
            while IFS=$'\t' read -r id url label; do
                path=${url#file://}
                path=$(printf '%b' "${path//%/\\x}") # percent-decoded
                mkdir -p "data/random/$label"
                cp "$path" "data/random/$label/$id.${path##*.}"
            done
        echo "$size" >data/random.done
    fi
    pipeline claim-random.ini
fi
if [ "$what" != curation ]; then
    pipeline claim-distill.ini
fi

{
    echo "k-NN top-1 / top-5 % (bank 2,000 Fashion-MNIST train images -> 1,000 test images;" \
        "$LVD_CLAIM_STEPS steps per training, settings $LVD_DEMO_SETTINGS)"
    for db in claim.db claim-random.db; do
        [ -f "$db" ] || continue
        sqlite3 -readonly -column -header "$db" \
            "SELECT e.model, e.k, printf('%.1f', e.top1) AS top1, printf('%.1f', e.top5) AS top5,
                    (SELECT COUNT(DISTINCT image_id) FROM v_curated c
                     WHERE c.model = 'claim-curator') AS curated_images
             FROM v_evals e WHERE e.protocol = 'knn'
               AND e.run = (SELECT MAX(run) FROM v_evals WHERE model = e.model)
             ORDER BY e.model, e.k"
    done
} | tee claims.txt
