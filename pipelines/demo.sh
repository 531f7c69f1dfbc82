#!/usr/bin/env bash
# The lvd demo, the main job (scripts/setup.sh demo runs it from the repository root after
# building into build/): the whole system on Debian's data, each step a stage of a pipeline
# file run by lvd-run (pipelines/README.md):
#   demo.ini           export Fashion-MNIST and crops of the MATE photos, fetch pool (both), seed,
#                      eval, bank
#   demo-train.ini     train a tiny ViT on the pool (skipped with LVD_MODEL); its teacher is
#                      registered as the first model
#   demo-curate.ini    embed every image with it; calibrate thresholds with planted copies
#   demo-select.ini    dedup and decontaminate at the calibrated threshold, retrieve around the
#                      seeds (k-NN and clusters), export the curated shards
#   demo-eval.ini      k-NN of the first model
#   demo-pretrain.ini  pretrain a second model on the curated set, distill it into a smaller
#                      one, the first model's ViT at init as a baseline (skipped with LVD_MODEL)
#   demo-eval-trained.ini  k-NN of those three
#   demo-report.ini    the HTML report (report/index.html)
# It closes with a table (pipelines/demo-summary.sh, also saved as summary.txt / summary.json in
# the work folder, recorded in the manifest and drawn on the report's index page): pool images
# kept and removed per reason, retrieval precision per seed class against chance, k-NN accuracy
# per model; then the wall time of every step. A rerun skips every finished step.
#
# Environment:
#   LVD_DEMO_DIR     work folder (default ./demo-out)
#   LVD_MODEL        a DINOv2 checkpoint (safetensors or torch .pth) to curate with instead of
#                    training one (then no training at all)
#   LVD_DEMO_POOL_SIZE, LVD_DEMO_SEEDS_PER_CLASS, LVD_DEMO_EVAL_SIZE, LVD_DEMO_BANK_PER_CLASS
#                    Fashion-MNIST images in the pool (default 2000), seeds per seed class
#                    (50), test images (500), bank images per class (100)
#   LVD_DEMO_CROPS_PER_PHOTO
#                    random crops of each of the 30 MATE photos in the pool, the off-domain
#                    images (default 25: 750 crops; lvd-crop-export)
#   LVD_DEMO_SETTINGS
#                    the training settings of every lvd-train / lvd-distill step, a file with
#                    a [train] and a [distill] section (default pipelines/demo-settings.ini)
#   LVD_DEMO_TRAIN_MINUTES, LVD_DEMO_TRAIN_STEPS
#                    first model: budget in minutes (default 5) and schedule length (200)
#   LVD_DEMO_CURATED_MINUTES, LVD_DEMO_CURATED_STEPS
#                    second model, on the curated set (default 3 and 150)
#   LVD_DEMO_DISTILL_MINUTES, LVD_DEMO_DISTILL_STEPS
#                    distillation (default 2 and 100)
#                    The budgets end a run early on a slow machine (no step starts after
#                    them); the defaults keep the demo to about 15 minutes on 2 cores.
#   LVD_DEMO_RESIZE  embedding resize and ...
#   LVD_DEMO_CROP    ... crop: default 28 / 28 for the trained model (its training resolution),
#                    112 / 112 for LVD_MODEL
#   LVD_DEMO_CLUSTERS
#                    k-means clusters of the cluster-based retrieval (default 10)
#   LVD_DEMO_THRESHOLD, LVD_DEMO_EVAL_THRESHOLD
#                    dedup and decontamination thresholds (default: lvd-calibrate's suggested
#                    threshold for the model, for both)
#   LVD_BUILD        build folder holding the executables (default ./build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${LVD_BUILD:-$root/build}" 2>/dev/null && pwd) || {
    echo "demo: no build folder ${LVD_BUILD:-$root/build}: run scripts/setup.sh build" >&2
    exit 1
}
work=${LVD_DEMO_DIR:-$PWD/demo-out}
say() { printf '[demo] %s\n' "$*"; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

# Every library folder of the build holding lvd-* executables (not tests/ or bench/) is where
# lvd-run finds its stages.
stage_path=$(find "$build" -mindepth 2 -maxdepth 3 -type f -name 'lvd-*' -perm -u+x \
    -not -path "$build/tests/*" -not -path "$build/bench/*" -printf '%h\n' | sort -u | paste -sd: -)
export LVD_STAGE_PATH=$stage_path
tool() {
    local dir
    for dir in ${stage_path//:/ }; do
        if [ -x "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
    done
    die "$1 is not built in $build (run scripts/setup.sh build)"
}
lvd_run=$(tool lvd-run)
lvd_model=$(tool lvd-model)
for t in lvd-idx-export lvd-crop-export lvd-fetch lvd-embed lvd-calibrate lvd-dedup lvd-retrieve lvd-export \
    lvd-eval lvd-report; do
    tool "$t" >/dev/null
done
[ -n "${LVD_MODEL:-}" ] || { tool lvd-train >/dev/null; tool lvd-distill >/dev/null; }
command -v sqlite3 >/dev/null || die "the sqlite3 command is needed (Debian package sqlite3)"

export LVD_FMNIST=${LVD_FMNIST:-/usr/share/datasets/fashion-mnist}
export LVD_MATE=${LVD_MATE:-/usr/share/backgrounds/mate}
if [ -n "${LVD_MODEL:-}" ]; then side=112; else side=28; fi
export LVD_DEMO_POOL_SIZE=${LVD_DEMO_POOL_SIZE:-2000}
export LVD_DEMO_SEEDS_PER_CLASS=${LVD_DEMO_SEEDS_PER_CLASS:-50}
export LVD_DEMO_EVAL_SIZE=${LVD_DEMO_EVAL_SIZE:-500}
export LVD_DEMO_BANK_PER_CLASS=${LVD_DEMO_BANK_PER_CLASS:-100}
export LVD_DEMO_CROPS_PER_PHOTO=${LVD_DEMO_CROPS_PER_PHOTO:-25}
export LVD_DEMO_CLUSTERS=${LVD_DEMO_CLUSTERS:-10}
export LVD_DEMO_RESIZE=${LVD_DEMO_RESIZE:-$side}
export LVD_DEMO_CROP=${LVD_DEMO_CROP:-$side}
export LVD_DEMO_SETTINGS=${LVD_DEMO_SETTINGS:-$root/pipelines/demo-settings.ini}
export LVD_DEMO_TRAIN_MINUTES=${LVD_DEMO_TRAIN_MINUTES:-5}
export LVD_DEMO_TRAIN_STEPS=${LVD_DEMO_TRAIN_STEPS:-200}
export LVD_DEMO_CURATED_MINUTES=${LVD_DEMO_CURATED_MINUTES:-3}
export LVD_DEMO_CURATED_STEPS=${LVD_DEMO_CURATED_STEPS:-150}
export LVD_DEMO_DISTILL_MINUTES=${LVD_DEMO_DISTILL_MINUTES:-2}
export LVD_DEMO_DISTILL_STEPS=${LVD_DEMO_DISTILL_STEPS:-100}
# Idle OpenMP threads sleep rather than spin: the stages share 2 cores with the loader threads.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -f "$LVD_FMNIST/train-images-idx3-ubyte.gz" ] ||
    die "Fashion-MNIST not found in $LVD_FMNIST (Debian package dataset-fashion-mnist)"
[ -d "$LVD_MATE" ] || die "$LVD_MATE not found (Debian package mate-backgrounds)"
[ -f "$LVD_DEMO_SETTINGS" ] || die "LVD_DEMO_SETTINGS=$LVD_DEMO_SETTINGS: no such file"
LVD_DEMO_SETTINGS=$(realpath -- "$LVD_DEMO_SETTINGS")

if [ -n "${LVD_MODEL:-}" ]; then
    [ -f "$LVD_MODEL" ] || die "LVD_MODEL=$LVD_MODEL: no such file"
    LVD_MODEL=$(realpath -- "$LVD_MODEL") # the work folder is entered below
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -e "$work/.gitignore" ] || printf '*\n' >"$work/.gitignore" # keep it out of git
cd "$work"
db=demo.db
start=$(date +%s)
first_run=$(sqlite3 "$db" "SELECT COALESCE(MAX(id), 0) FROM runs" 2>/dev/null || echo 0)

# Runs one pipeline file of the demo.
pipeline() {
    say "running $root/pipelines/$1"
    "$lvd_run" "$root/pipelines/$1" --db "$db"
}

# Registers the teacher exported into folder $2 as model <$1>-<first 8 hex digits of its
# SHA-256> (lvd-model refuses a name twice, lvd-embed a registered file that changed since: a
# rerun with a larger budget continues a training into a new teacher, which is then a new
# model) and prints the name.
register() {
    local teacher=$work/$2/teacher_backbone.safetensors name
    [ -f "$teacher" ] || die "no teacher exported in $teacher"
    name=$1-$(sha256sum "$teacher" | cut -c1-8)
    if ! "$lvd_model" list --db "$db" | cut -f1 | grep -qx -- "$name"; then
        "$lvd_model" add --db "$db" --name "$name" "$teacher" >&2
    fi
    printf '%s\n' "$name"
}

say "work folder $work"
pipeline demo.ini

if [ -n "${LVD_MODEL:-}" ]; then
    # A checkpoint registered once under a name that says what it is.
    name=$(basename "$LVD_MODEL")
    name=ckpt-$(printf '%s' "${name%.*}" | tr -c 'A-Za-z0-9._-' '_')
    export LVD_DEMO_MODEL=$name
    say "model: checkpoint $LVD_MODEL (registered as $name)"
    if ! "$lvd_model" list --db "$db" | cut -f1 | grep -qx -- "$name"; then
        "$lvd_model" add --db "$db" --name "$name" "$LVD_MODEL"
    fi
else
    say "first model: a small ViT (the fmnist recipe: patch 28, 28 px) trained on the pool, $LVD_DEMO_TRAIN_STEPS" \
        "steps or $LVD_DEMO_TRAIN_MINUTES min (LVD_DEMO_TRAIN_STEPS, LVD_DEMO_TRAIN_MINUTES)"
    pipeline demo-train.ini
    LVD_DEMO_MODEL=$(register demo-ssl train)
    export LVD_DEMO_MODEL
    say "first model: the trained teacher, registered as $LVD_DEMO_MODEL"
fi

say "embedding at resize $LVD_DEMO_RESIZE, crop $LVD_DEMO_CROP; calibration with planted copies"
pipeline demo-curate.ini
m=$(printf '%s' "$LVD_DEMO_MODEL" | sed "s/'/''/g")
# lvd-calibrate's suggestion when copies and distinct images separate (the midpoint between
# them); when they overlap, the 95th percentile of the nearest other image's similarity
# instead of the copies' 5th (which would merge most distinct images): few distinct images are
# removed, and copies above it still are. At most 0.9999: a pool holding identical images puts
# that percentile at 1, which no similarity exceeds.
calibrated=$(sqlite3 -readonly "$db" "SELECT printf('%.4f', CASE
        WHEN json_extract(counts, '\$.separable') THEN json_extract(counts, '\$.threshold')
        ELSE min(0.9999, max(json_extract(counts, '\$.threshold'),
                             json_extract(counts, '\$.nearest_other.p95'))) END)
    FROM v_runs WHERE stage = 'calibrate' AND status = 'ok'
      AND json_extract(params, '\$.model') = '$m' ORDER BY id DESC LIMIT 1")
[ -n "$calibrated" ] || die "no calibration of $LVD_DEMO_MODEL recorded"
export LVD_DEMO_THRESHOLD=${LVD_DEMO_THRESHOLD:-$calibrated}
export LVD_DEMO_EVAL_THRESHOLD=${LVD_DEMO_EVAL_THRESHOLD:-$calibrated}
say "calibrated threshold $calibrated; dedup at $LVD_DEMO_THRESHOLD, decontamination at" \
    "$LVD_DEMO_EVAL_THRESHOLD (LVD_DEMO_THRESHOLD, LVD_DEMO_EVAL_THRESHOLD)"
pipeline demo-select.ini
pipeline demo-eval.ini

roles=("first=$LVD_DEMO_MODEL")
if [ -z "${LVD_MODEL:-}" ]; then
    say "second model on the curated set ($LVD_DEMO_CURATED_STEPS steps or" \
        "$LVD_DEMO_CURATED_MINUTES min), distilled into a smaller one ($LVD_DEMO_DISTILL_STEPS" \
        "steps or $LVD_DEMO_DISTILL_MINUTES min), the untrained ViT as a baseline"
    # The trainings' folder, named by the curated set (its sorted image ids).
    set_hash=$(sqlite3 -readonly "$db" "SELECT image_id FROM v_curated WHERE model = '$m'
        GROUP BY image_id ORDER BY image_id" | sha256sum | cut -c1-8)
    export LVD_DEMO_RUNS=runs/$LVD_DEMO_MODEL-$set_hash
    pipeline demo-pretrain.ini
    LVD_DEMO_CURATED_MODEL=$(register demo-curated "$LVD_DEMO_RUNS/curated")
    LVD_DEMO_DISTILLED_MODEL=$(register demo-distilled "$LVD_DEMO_RUNS/distill")
    LVD_DEMO_INIT_MODEL=$(register demo-init train-init)
    export LVD_DEMO_CURATED_MODEL LVD_DEMO_DISTILLED_MODEL LVD_DEMO_INIT_MODEL
    pipeline demo-eval-trained.ini
    roles+=("curated=$LVD_DEMO_CURATED_MODEL" "distilled=$LVD_DEMO_DISTILLED_MODEL"
        "init=$LVD_DEMO_INIT_MODEL")
fi

# The table first, so that the report draws it.
say "summary (also in $work/summary.txt and summary.json):"
echo
bash "$root/pipelines/demo-summary.sh" "$db" "$work/summary" "${roles[@]}" >/dev/null
pipeline demo-report.ini
echo
cat "$work/summary.txt"
echo
say "time per step of this run (lvd-run's records; skipped steps are not listed):"
sqlite3 -readonly -column -header "$db" \
    "SELECT substr(stage, 10) AS step, printf('%.1f', json_extract(counts, '\$.seconds')) AS s
     FROM v_runs WHERE stage LIKE 'pipeline:%' AND id > $first_run ORDER BY id"
times >"$work/.times" # the shell's own, then its children's user and system time
times_line=$(tail -1 "$work/.times")
say "done in $(( $(date +%s) - start )) s wall (CPU of the steps, user and system:" \
    "$times_line); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
say "report: $work/report/index.html; manifest: $work/$db (views in store/MANIFEST.md), e.g."
cat <<SQL
  sqlite3 $work/$db "SELECT kept, reason, COUNT(*) FROM v_duplicates GROUP BY kept, reason"
  sqlite3 $work/$db "SELECT dataset, method, COUNT(*) FROM v_curated GROUP BY dataset, method"
  sqlite3 $work/$db "SELECT model, k, top1, top5 FROM v_evals WHERE protocol = 'knn'"
  sqlite3 $work/$db "SELECT step, loss_total, lr FROM v_train_steps WHERE step % 10 = 0"
SQL
