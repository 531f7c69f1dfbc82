#!/usr/bin/env bash
# The lvd demo (scripts/setup.sh demo runs it from the repository root after building into
# build/), three pipeline files run by lvd-run: pipelines/demo.ini exports Fashion-MNIST and
# fetches it with the MATE desktop photos into shards; pipelines/demo-train.ini trains a tiny ViT
# on the pool with lvd-train and registers its teacher (skipped when LVD_MODEL names a
# checkpoint); pipelines/demo-curate.ini embeds with that model, dedups and decontaminates the
# pool, retrieves around the seeds and exports the curated shards; pipelines/demo-eval.ini scores
# the model with k-NN (lvd-eval; skipped with a message when it is not built).
# It closes with a summary: images kept and removed per reason, curated images per method, k-NN
# top-1.
#
# Environment:
#   LVD_DEMO_DIR     work folder (default ./demo-out); rerunning skips the finished steps
#   LVD_MODEL        a DINOv2 checkpoint (safetensors or torch .pth) to use instead of
#                    training one (then no training)
#   LVD_DEMO_TRAIN_MINUTES
#                    training budget in minutes (default 5)
#   LVD_DEMO_TRAIN_STEPS
#                    the training schedules' length in steps (default 3000; the budget
#                    normally ends the run first)
#   LVD_DEMO_RESIZE  embedding resize and ...
#   LVD_DEMO_CROP    ... crop: default 28 / 28 for the trained model (its training resolution),
#                    112 / 112 for LVD_MODEL (below the reference 256/224 to keep the demo to a
#                    few minutes on 2 cores; Fashion-MNIST images are 28 x 28 anyway)
#   LVD_DEMO_THRESHOLD, LVD_DEMO_EVAL_THRESHOLD
#                    dedup and decontamination thresholds of pipelines/demo-curate.ini
#                    (defaults 0.99 and 0.98)
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
lvd_status=$(tool lvd-status)
lvd_model=$(tool lvd-model)
tool lvd-idx-export >/dev/null
tool lvd-fetch >/dev/null
tool lvd-embed >/dev/null
tool lvd-dedup >/dev/null
tool lvd-retrieve >/dev/null
tool lvd-export >/dev/null
[ -n "${LVD_MODEL:-}" ] || tool lvd-train >/dev/null

export LVD_FMNIST=${LVD_FMNIST:-/usr/share/datasets/fashion-mnist}
export LVD_MATE=${LVD_MATE:-/usr/share/backgrounds/mate}
if [ -n "${LVD_MODEL:-}" ]; then side=112; else side=28; fi
export LVD_DEMO_RESIZE=${LVD_DEMO_RESIZE:-$side}
export LVD_DEMO_CROP=${LVD_DEMO_CROP:-$side}
export LVD_DEMO_TRAIN_MINUTES=${LVD_DEMO_TRAIN_MINUTES:-5}
export LVD_DEMO_TRAIN_STEPS=${LVD_DEMO_TRAIN_STEPS:-3000}
export LVD_DEMO_THRESHOLD=${LVD_DEMO_THRESHOLD:-0.99}
export LVD_DEMO_EVAL_THRESHOLD=${LVD_DEMO_EVAL_THRESHOLD:-0.98}
[ -f "$LVD_FMNIST/train-images-idx3-ubyte.gz" ] ||
    die "Fashion-MNIST not found in $LVD_FMNIST (Debian package dataset-fashion-mnist)"
[ -d "$LVD_MATE" ] || die "$LVD_MATE not found (Debian package mate-backgrounds)"

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

say "work folder $work: running $root/pipelines/demo.ini (export, fetch)"
"$lvd_run" "$root/pipelines/demo.ini" --db "$db"

# The model: a checkpoint registered once under a name that says what it is (lvd-model refuses
# to register a name twice, and lvd-embed refuses a checkpoint file that changed since), or the
# demo's own, trained and registered by lvd-train.
if [ -n "${LVD_MODEL:-}" ]; then
    name=$(basename "$LVD_MODEL")
    name=ckpt-$(printf '%s' "${name%.*}" | tr -c 'A-Za-z0-9._-' '_')
    export LVD_DEMO_MODEL=$name
    say "model: checkpoint $LVD_MODEL (registered as $name)"
    if ! "$lvd_model" list --db "$db" | cut -f1 | grep -qx -- "$name"; then
        "$lvd_model" add --db "$db" --name "$name" "$LVD_MODEL"
    fi
else
    say "model: training a tiny ViT (patch 4, 28 px) on the pool for at most" \
        "$LVD_DEMO_TRAIN_MINUTES min (LVD_DEMO_TRAIN_MINUTES): $root/pipelines/demo-train.ini"
    "$lvd_run" "$root/pipelines/demo-train.ini" --db "$db"
    # Named by its content: a rerun with a larger budget continues the training and makes a new
    # teacher, which is then a new model (embedded and curated again) rather than a changed file.
    teacher=$work/train/teacher_backbone.safetensors
    [ -f "$teacher" ] || die "lvd-train exported no teacher ($teacher)"
    name=demo-tiny-$(sha256sum "$teacher" | cut -c1-8)
    export LVD_DEMO_MODEL=$name
    if ! "$lvd_model" list --db "$db" | cut -f1 | grep -qx -- "$name"; then
        "$lvd_model" add --db "$db" --name "$name" "$teacher"
    fi
    say "model: the trained teacher, registered as $name"
fi

say "embedding at resize $LVD_DEMO_RESIZE, crop $LVD_DEMO_CROP, then dedup, retrieve, export:" \
    "running $root/pipelines/demo-curate.ini"
"$lvd_run" "$root/pipelines/demo-curate.ini" --db "$db"
if (tool lvd-eval) >/dev/null 2>&1; then
    say "k-NN evaluation: running $root/pipelines/demo-eval.ini"
    "$lvd_run" "$root/pipelines/demo-eval.ini" --db "$db"
else
    say "k-NN evaluation skipped: lvd-eval is not built in $build"
fi

say "done in $(( $(date +%s) - start )) s; status (lvd-status --db $work/$db):"
"$lvd_status" --db "$db"

cat <<SQL

[demo] The manifest is a SQLite database; its views are documented in store/MANIFEST.md.
Try, for example:
  sqlite3 $work/$db "SELECT source, status, n FROM v_status ORDER BY source"
  sqlite3 $work/$db "SELECT label, COUNT(*) FROM v_images WHERE source = 'seed' GROUP BY label"
  sqlite3 $work/$db "SELECT model, COUNT(*) FROM v_embeddings GROUP BY model"
  sqlite3 $work/$db "SELECT url, shard, member FROM v_images WHERE source = 'pool' LIMIT 5"
  sqlite3 $work/$db "SELECT id, stage, status, started, finished FROM v_runs ORDER BY id"
  sqlite3 $work/$db "SELECT kept, reason, COUNT(*) FROM v_duplicates GROUP BY kept, reason"
  sqlite3 $work/$db "SELECT dataset, method, COUNT(*) FROM v_curated GROUP BY dataset, method"
  sqlite3 $work/$db "SELECT model, k, top1, top5 FROM v_evals WHERE protocol = 'knn'"
SQL

# The closing summary, from the manifest's views.
m=$LVD_DEMO_MODEL
if command -v sqlite3 >/dev/null; then
    echo
    say "summary for model $m"
    say "pool after dedup (threshold $LVD_DEMO_THRESHOLD) and decontamination" \
        "(threshold $LVD_DEMO_EVAL_THRESHOLD against eval and bank):"
    sqlite3 -column -header "$db" \
        "SELECT CASE WHEN reason IS NULL THEN 'kept' ELSE 'removed: ' || reason END AS images,
                COUNT(*) AS n
         FROM v_duplicates WHERE model = '$m' GROUP BY images ORDER BY images DESC"
    say "curated set (distinct images per method; exported to $work/curated):"
    sqlite3 -column -header "$db" \
        "SELECT method, COUNT(DISTINCT image_id) AS images FROM v_curated WHERE model = '$m'
         GROUP BY method UNION ALL
         SELECT 'all', COUNT(DISTINCT image_id) FROM v_curated WHERE model = '$m'"
    say "k-NN classification (bank: 1,000 Fashion-MNIST train images, test: 500 test images):"
    sqlite3 -column -header "$db" \
        "SELECT k, printf('%.1f', top1) AS top1, printf('%.1f', top5) AS top5, n_train, n_test
         FROM v_evals WHERE protocol = 'knn' AND model = '$m'
           AND run = (SELECT MAX(run) FROM v_evals WHERE protocol = 'knn' AND model = '$m')
         ORDER BY k"
else
    say "install sqlite3 for the closing summary"
fi
