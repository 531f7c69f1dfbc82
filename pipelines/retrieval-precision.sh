#!/usr/bin/env bash
# Scores the seed-based retrieval of a manifest against the images' labels (v_images.label, e.g.
# the Fashion-MNIST class folders of the demo): labels are used here only, never by lvd-retrieve.
#
#   bash pipelines/retrieval-precision.sh DB [MODEL]
#
# Per model and seed class, sample-based ('knn') rows: precision = share of the rows whose
# retrieved pool image has the seed's label; chance = that label's share of the kept pool
# (v_duplicates.kept = 1), what random picks would score. Cluster-based ('cluster') rows are not
# tied to one seed: per model and dataset, the share of picks whose label is one of that seed
# source's labels, against the same share of the kept pool. Needs the sqlite3 command.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = "--help" ]; then
    echo "usage: bash pipelines/retrieval-precision.sh DB [MODEL]" >&2
    [ "${1:-}" = "--help" ] && exit 0
    exit 2
fi
db=$1
[ -f "$db" ] || { echo "retrieval-precision: $db: no such file" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "retrieval-precision: sqlite3 not found" >&2; exit 1; }
model=${2:-}
model_sql=NULL
[ -n "$model" ] && model_sql="'${model//\'/\'\'}'"

sqlite3 -readonly -header -column "$db" <<SQL
-- Kept pool images of each model with their labels.
CREATE TEMP VIEW kept AS
  SELECT d.model, i.label FROM v_duplicates d JOIN v_images i ON i.id = d.image_id
  WHERE d.kept = 1 AND ($model_sql IS NULL OR d.model = $model_sql);

.print "sample-based (knn): precision per seed class"
SELECT c.model, s.label AS seed_class, COUNT(DISTINCT c.seed_image_id) AS seeds,
       COUNT(*) AS rows, SUM(p.label = s.label) AS hits,
       ROUND(1.0 * SUM(p.label = s.label) / COUNT(*), 3) AS precision,
       ROUND((SELECT 1.0 * SUM(k.label = s.label) / COUNT(*) FROM kept k
              WHERE k.model = c.model), 3) AS chance
  FROM v_curated c JOIN v_images s ON s.id = c.seed_image_id
  JOIN v_images p ON p.id = c.image_id
  WHERE c.method = 'knn' AND ($model_sql IS NULL OR c.model = $model_sql)
  GROUP BY c.model, s.label ORDER BY c.model, s.label;

.print ""
.print "cluster-based: share of picks labelled with one of the seed source's classes"
SELECT c.model, c.dataset, COUNT(*) AS rows,
       SUM(p.label IN (SELECT label FROM v_images WHERE source = c.dataset)) AS hits,
       ROUND(1.0 * SUM(p.label IN (SELECT label FROM v_images WHERE source = c.dataset))
             / COUNT(*), 3) AS precision,
       ROUND((SELECT 1.0 * SUM(k.label IN (SELECT label FROM v_images WHERE source = c.dataset))
              / COUNT(*) FROM kept k WHERE k.model = c.model), 3) AS chance
  FROM v_curated c JOIN v_images p ON p.id = c.image_id
  WHERE c.method = 'cluster' AND ($model_sql IS NULL OR c.model = $model_sql)
  GROUP BY c.model, c.dataset ORDER BY c.model, c.dataset;
SQL
