#!/usr/bin/env bash
# The lvd demo (scripts/setup.sh demo runs it from the repository root after building into
# build/): Fashion-MNIST and the MATE desktop photos, exported, fetched into shards and embedded by
# pipelines/demo.ini through lvd-run, then summarized by lvd-status.
#
# Environment:
#   LVD_DEMO_DIR     work folder (default ./demo-out); rerunning skips the finished steps
#   LVD_MODEL        a DINOv2 checkpoint (safetensors or torch .pth) to embed with; without it
#                    the built-in randomly initialized ViT-S/14 is used
#   LVD_DEMO_RESIZE  embedding resize (default 112) and ...
#   LVD_DEMO_CROP    ... crop (default 112): below the reference 256/224 to keep the demo to a
#                    few minutes on 2 cores; Fashion-MNIST images are 28 x 28 anyway
#   LVD_DEMO_THRESHOLD, LVD_DEMO_EVAL_THRESHOLD
#                    dedup and decontamination thresholds of pipelines/demo-curate.ini
#                    (defaults 0.99 and 0.98), which runs only with LVD_MODEL
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
if [ -n "${LVD_MODEL:-}" ]; then
    tool lvd-dedup >/dev/null
    tool lvd-retrieve >/dev/null
    tool lvd-export >/dev/null
fi

export LVD_FMNIST=${LVD_FMNIST:-/usr/share/datasets/fashion-mnist}
export LVD_MATE=${LVD_MATE:-/usr/share/backgrounds/mate}
export LVD_DEMO_RESIZE=${LVD_DEMO_RESIZE:-112}
export LVD_DEMO_CROP=${LVD_DEMO_CROP:-112}
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

# The model: registered once under a name that says what it is (lvd-model refuses to register
# a name twice, and lvd-embed refuses a checkpoint file that changed since).
if [ -n "${LVD_MODEL:-}" ]; then
    name=$(basename "$LVD_MODEL")
    name=ckpt-$(printf '%s' "${name%.*}" | tr -c 'A-Za-z0-9._-' '_')
    model_args=("$LVD_MODEL")
    say "model: checkpoint $LVD_MODEL (registered as $name)"
else
    name=vits14-random
    model_args=(--random vits14)
    say "model: built-in ViT-S/14 with RANDOM weights: features are not meaningful"
    say "       (set LVD_MODEL=/path/to/dinov2_vits14 checkpoint for real features)"
fi
export LVD_DEMO_MODEL=$name
registered=$("$lvd_model" list --db "$db" | cut -f1)
if ! grep -qx -- "$name" <<<"$registered"; then
    "$lvd_model" add --db "$db" --name "$name" "${model_args[@]}"
fi
say "embedding at resize $LVD_DEMO_RESIZE, crop $LVD_DEMO_CROP (the reference transform is 256/224)"

say "work folder $work: running $root/pipelines/demo.ini"
"$lvd_run" "$root/pipelines/demo.ini" --db "$db"
if [ -n "${LVD_MODEL:-}" ]; then
    say "curation: running $root/pipelines/demo-curate.ini (dedup, retrieve, export)"
    "$lvd_run" "$root/pipelines/demo-curate.ini" --db "$db"
else
    say "curation (pipelines/demo-curate.ini: dedup, retrieve, export) skipped: random-weight"
    say "       features are all alike (cosine about 1), every pool image would be one component."
    say "       Set LVD_MODEL to a DINOv2 checkpoint to run it."
fi

say "done in $(( $(date +%s) - start )) s; summary (lvd-status --db $work/$db):"
"$lvd_status" --db "$db"

cat <<SQL

[demo] The manifest is a SQLite database; its views are documented in store/MANIFEST.md.
Try, for example:
  sqlite3 $work/$db "SELECT source, status, n FROM v_status ORDER BY source"
  sqlite3 $work/$db "SELECT label, COUNT(*) FROM v_images WHERE source = 'seed' GROUP BY label"
  sqlite3 $work/$db "SELECT model, COUNT(*) FROM v_embeddings GROUP BY model"
  sqlite3 $work/$db "SELECT url, shard, member FROM v_images WHERE source = 'pool' LIMIT 5"
  sqlite3 $work/$db "SELECT id, stage, status, started, finished FROM v_runs ORDER BY id"
SQL
if [ -n "${LVD_MODEL:-}" ]; then
    cat <<SQL
  sqlite3 $work/$db "SELECT kept, reason, COUNT(*) FROM v_duplicates GROUP BY kept, reason"
  sqlite3 $work/$db "SELECT dataset, method, COUNT(*) FROM v_curated GROUP BY dataset, method"
SQL
fi
if command -v sqlite3 >/dev/null; then
    say "for instance, the seed labels:"
    sqlite3 -column -header "$db" \
        "SELECT label, COUNT(*) AS n FROM v_images WHERE source = 'seed' GROUP BY label"
fi
if [ -z "${LVD_MODEL:-}" ]; then
    say "reminder: the embeddings come from RANDOM weights: features are not meaningful"
fi
