#!/usr/bin/env bash
# The demo's closing table, from the manifest's views (pipelines/demo.sh runs it last):
#
#   bash pipelines/demo-summary.sh DB OUT_PREFIX ROLE=MODEL...
#
# The first ROLE=MODEL is the model that curated (its dedup, decontamination and retrieval are
# summarized); every pair gets a k-NN row (the latest lvd-eval knn run of the model, v_evals).
# Writes OUT_PREFIX.txt (the table as printed) and OUT_PREFIX.json, and records the JSON in the
# manifest as a run of stage 'demo-summary' (v_runs counts; lvd-report draws the last one as
# tables on its index page, curate/stages/report_summary.h) unless the last such run holds the
# same figures.
#
# 1. Pool images: removed at fetch (exact byte copies), by dedup (near-duplicates), by
#    decontamination (components near an eval or bank image), kept but not retrieved, retrieved.
# 2. Retrieval precision per seed class, sample-based ('knn' rows): of the distinct pool images
#    retrieved by the seeds of a class, the share whose label (the Fashion-MNIST class folder)
#    is that class; chance = the class's share of the pool (stored images), what random picks
#    would score, and kept_share its share of the kept pool (after dedup and decontamination).
#    Cluster-based rows: the share of the picks labelled with one of the seed classes, against
#    the same shares. Labels are read here only, never by the stages.
# 3. k-NN top-1 / top-5 per model and k (bank -> eval).
# Needs the sqlite3 command.
set -euo pipefail

if [ $# -lt 3 ] || [ "$1" = "--help" ]; then
    echo "usage: bash pipelines/demo-summary.sh DB OUT_PREFIX ROLE=MODEL..." >&2
    [ "${1:-}" = "--help" ] && exit 0
    exit 2
fi
db=$1 out=$2
shift 2
[ -f "$db" ] || { echo "demo-summary: $db: no such file" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "demo-summary: sqlite3 not found" >&2; exit 1; }

# The (role, model) pairs as SQL rows; the first is the curating model.
quote() { printf "'%s'" "${1//\'/\'\'}"; }
pairs=""
n=0
for arg in "$@"; do
    case "$arg" in
    *=*) ;;
    *) echo "demo-summary: '$arg' is not ROLE=MODEL" >&2; exit 2 ;;
    esac
    [ -n "$pairs" ] && pairs+=" UNION ALL "
    pairs+="SELECT $n AS ord, $(quote "${arg%%=*}") AS role, $(quote "${arg#*=}") AS model"
    n=$((n + 1))
done
curator=$(quote "${1#*=}")

# Temporary views shared by the text and JSON queries.
views="
CREATE TEMP VIEW roles AS $pairs;
CREATE TEMP VIEW pool AS
  SELECT i.id, i.label, i.status, d.kept, d.reason,
         EXISTS (SELECT 1 FROM v_curated c WHERE c.image_id = i.id AND c.model = $curator)
           AS retrieved
  FROM v_images i LEFT JOIN v_duplicates d ON d.image_id = i.id AND d.model = $curator
  WHERE i.source = 'pool' AND i.status IN ('ok', 'duplicate');
CREATE TEMP VIEW fate AS
  SELECT 1 AS ord, 'removed at fetch: exact copy' AS images,
         (SELECT COUNT(*) FROM pool WHERE status = 'duplicate') AS n UNION ALL
  SELECT 2, 'removed by dedup: near-duplicate',
         (SELECT COUNT(*) FROM pool WHERE reason = 'duplicate') UNION ALL
  SELECT 3, 'removed by decontamination',
         (SELECT COUNT(*) FROM pool WHERE reason = 'eval') UNION ALL
  SELECT 4, 'kept, not retrieved',
         (SELECT COUNT(*) FROM pool WHERE kept = 1 AND NOT retrieved) UNION ALL
  SELECT 5, 'kept, retrieved (curated)',
         (SELECT COUNT(*) FROM pool WHERE kept = 1 AND retrieved) UNION ALL
  SELECT 6, 'not processed by dedup',
         (SELECT COUNT(*) FROM pool WHERE status = 'ok' AND kept IS NULL);
CREATE TEMP VIEW kept AS SELECT label FROM pool WHERE kept = 1;
CREATE TEMP VIEW stored AS SELECT label FROM pool WHERE status = 'ok';
CREATE TEMP VIEW knn_class AS
  SELECT s.label AS seed_class, COUNT(DISTINCT c.seed_image_id) AS seeds,
         COUNT(DISTINCT c.image_id) AS retrieved,
         COUNT(DISTINCT CASE WHEN p.label = s.label THEN c.image_id END) AS hits
  FROM v_curated c JOIN v_images s ON s.id = c.seed_image_id JOIN v_images p ON p.id = c.image_id
  WHERE c.method = 'knn' AND c.model = $curator GROUP BY s.label;
CREATE TEMP VIEW precision AS
  SELECT 'knn' AS method, seed_class, seeds, retrieved, hits,
         1.0 * hits / retrieved AS precision,
         (SELECT 1.0 * SUM(label = seed_class) / COUNT(*) FROM stored) AS chance,
         (SELECT 1.0 * SUM(label = seed_class) / COUNT(*) FROM kept) AS kept_share
  FROM knn_class UNION ALL
  SELECT 'cluster', 'any seed class', NULL, COUNT(DISTINCT c.image_id),
         COUNT(DISTINCT CASE WHEN p.label IN (SELECT label FROM v_images WHERE role = 'seed')
                        THEN c.image_id END),
         1.0 * COUNT(DISTINCT CASE WHEN p.label IN (SELECT label FROM v_images
                                                    WHERE role = 'seed') THEN c.image_id END)
           / COUNT(DISTINCT c.image_id),
         (SELECT 1.0 * SUM(label IN (SELECT label FROM v_images WHERE role = 'seed')) / COUNT(*)
          FROM stored),
         (SELECT 1.0 * SUM(label IN (SELECT label FROM v_images WHERE role = 'seed')) / COUNT(*)
          FROM kept)
  FROM v_curated c JOIN v_images p ON p.id = c.image_id
  WHERE c.method = 'cluster' AND c.model = $curator HAVING COUNT(*) > 0;
CREATE TEMP VIEW knn AS
  SELECT r.ord, r.role, r.model, e.k, e.top1, e.top5, e.n_train, e.n_test
  FROM roles r JOIN v_evals e ON e.model = r.model AND e.protocol = 'knn'
   AND e.run = (SELECT MAX(run) FROM v_evals WHERE model = r.model AND protocol = 'knn');
"

text=$(sqlite3 -readonly "$db" <<SQL
$views
.mode column
.headers on
.print "pool images, curated with model ${1#*=}"
SELECT images, n FROM fate WHERE ord < 6 OR n > 0 ORDER BY ord;
.print ""
.print "curated set: seeds and retrieved pool images (distinct images per method)"
SELECT method, COUNT(DISTINCT image_id) AS images FROM v_curated WHERE model = $curator
GROUP BY method UNION ALL
SELECT 'all', COUNT(DISTINCT image_id) FROM v_curated WHERE model = $curator;
.print ""
.print "retrieval precision per seed class (labels only score; chance = the class's share of the"
.print "pool, kept_share = its share of the kept pool, which retrieval picks from)"
SELECT method, seed_class, seeds, retrieved, hits, printf('%.3f', precision) AS precision,
       printf('%.3f', chance) AS chance, printf('%.1fx', precision / chance) AS vs_chance,
       printf('%.3f', kept_share) AS kept_share
FROM precision ORDER BY method DESC, seed_class;
.print ""
.print "k-NN classification (lvd-eval knn, bank -> eval): top-1 / top-5 %"
SELECT role, model, k, printf('%.1f', top1) AS top1, printf('%.1f', top5) AS top5, n_train,
       n_test
FROM knn ORDER BY ord, k;
SQL
)

json=$(sqlite3 -readonly "$db" <<SQL
$views
SELECT json_object(
  'model', ${curator},
  'pool', (SELECT json_object(
      'removed_fetch_exact', (SELECT n FROM fate WHERE ord = 1),
      'removed_dedup', (SELECT n FROM fate WHERE ord = 2),
      'removed_decontamination', (SELECT n FROM fate WHERE ord = 3),
      'kept_not_retrieved', (SELECT n FROM fate WHERE ord = 4),
      'kept_retrieved', (SELECT n FROM fate WHERE ord = 5),
      'not_processed', (SELECT n FROM fate WHERE ord = 6))),
  'curated', (SELECT json_group_object(method, n) FROM (
      SELECT method, COUNT(DISTINCT image_id) AS n FROM v_curated WHERE model = $curator
      GROUP BY method UNION ALL
      SELECT 'all', COUNT(DISTINCT image_id) FROM v_curated WHERE model = $curator)),
  'precision', (SELECT json_group_array(json_object(
      'method', method, 'seed_class', seed_class, 'seeds', seeds, 'retrieved', retrieved,
      'hits', hits, 'precision', round(precision, 6), 'chance', round(chance, 6),
      'vs_chance', round(precision / chance, 6), 'kept_share', round(kept_share, 6)))
      FROM (SELECT * FROM precision ORDER BY method DESC, seed_class)),
  'knn', (SELECT json_group_array(json_object(
      'role', role, 'model', model, 'k', k, 'top1', round(top1, 2), 'top5', round(top5, 2),
      'n_train', n_train, 'n_test', n_test)) FROM (SELECT * FROM knn ORDER BY ord, k)));
SQL
)

printf '%s\n' "$text" | tee "$out.txt"
printf '%s\n' "$json" >"$out.json"

# Record the figures once: a rerun of an unchanged demo adds no run.
last=$(sqlite3 -readonly "$db" \
    "SELECT counts FROM v_runs WHERE stage = 'demo-summary' ORDER BY id DESC LIMIT 1")
if [ "$last" != "$json" ]; then
    sqlite3 "$db" "PRAGMA busy_timeout = 5000;
        INSERT INTO runs (stage, params, finished, status, counts)
        VALUES ('demo-summary', json_object('out', $(quote "$out")),
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'ok', $(quote "$json"));"
fi
