/* The manifest's migrations. Append only: a released migration is never edited, because
 * existing manifests already ran it. Later stages (embeddings per model, dedup, curated sets,
 * models registry) add a new entry at the end. */
#include "store/manifest.h"

#include <stddef.h>

static const char *const migrations[] = {
    /* 1: sources, runs, shards, images (the fetch stage) and the stable views. */
    "CREATE TABLE sources ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL CHECK (role IN ('pool', 'seed', 'eval')),"
    "  created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  stage TEXT NOT NULL,"
    "  params TEXT NOT NULL DEFAULT '{}',"
    "  started TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
    "  finished TEXT,"
    "  status TEXT NOT NULL DEFAULT 'running',"
    "  counts TEXT);"
    "CREATE TABLE shards ("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT UNIQUE,"
    "  status TEXT NOT NULL DEFAULT 'writing' CHECK (status IN ('writing', 'complete')),"
    "  members INTEGER NOT NULL DEFAULT 0,"
    "  bytes INTEGER NOT NULL DEFAULT 0,"
    "  run_id INTEGER REFERENCES runs(id));"
    "CREATE TABLE images ("
    "  id INTEGER PRIMARY KEY,"
    "  source_id INTEGER NOT NULL REFERENCES sources(id),"
    "  url TEXT NOT NULL,"
    "  key TEXT,"
    "  label TEXT,"
    "  caption TEXT,"
    "  status TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (status IN ('pending', 'ok', 'duplicate', 'failed')),"
    "  error_class TEXT,"
    "  error TEXT,"
    "  sha256 TEXT,"
    "  width INTEGER,"
    "  height INTEGER,"
    "  format TEXT,"
    "  bytes INTEGER,"
    "  shard_id INTEGER REFERENCES shards(id),"
    "  member TEXT,"
    "  duplicate_of INTEGER REFERENCES images(id),"
    "  run_id INTEGER REFERENCES runs(id),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (source_id, url));"
    "CREATE INDEX images_by_status ON images(source_id, status);"
    "CREATE INDEX images_by_sha256 ON images(sha256) WHERE status = 'ok';"
    "CREATE INDEX images_by_shard ON images(shard_id);"
    "CREATE VIEW v_images AS"
    "  SELECT i.id, s.name AS source, s.role, i.url, i.label, i.status, i.error_class, i.error,"
    "         i.sha256, i.width, i.height, i.format,"
    "         sh.path AS shard, COALESCE(i.member, d.member) AS member, i.duplicate_of"
    "  FROM images i"
    "  JOIN sources s ON s.id = i.source_id"
    "  LEFT JOIN images d ON d.id = i.duplicate_of"
    "  LEFT JOIN shards sh ON sh.id = COALESCE(i.shard_id, d.shard_id);"
    "CREATE VIEW v_runs AS"
    "  SELECT id, stage, params, started, finished, status, counts FROM runs;"
    "CREATE VIEW v_status AS"
    "  SELECT s.name AS source, i.status, i.error_class, COUNT(*) AS n"
    "  FROM images i JOIN sources s ON s.id = i.source_id"
    "  GROUP BY s.name, i.status, i.error_class;",

    /* 2: models and embeddings (the embed stage). An embedding is one row of a float32 .npy
     * file; a model's rows all have `dim` values, made with one feature mode. */
    "CREATE TABLE models ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  path TEXT,"
    "  sha256 TEXT,"
    "  arch TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  params INTEGER,"
    "  features TEXT NOT NULL DEFAULT 'cls' CHECK (features IN ('cls', 'cls+patchmean', 'external')),"
    "  config TEXT NOT NULL DEFAULT '{}',"
    "  created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
    "CREATE TABLE embedding_files ("
    "  id INTEGER PRIMARY KEY,"
    "  model_id INTEGER NOT NULL REFERENCES models(id),"
    "  path TEXT NOT NULL UNIQUE,"
    "  rows INTEGER NOT NULL,"
    "  cols INTEGER NOT NULL,"
    "  normalized INTEGER NOT NULL DEFAULT 1,"
    "  run_id INTEGER REFERENCES runs(id));"
    "CREATE TABLE embeddings ("
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  model_id INTEGER NOT NULL REFERENCES models(id),"
    "  file_id INTEGER NOT NULL REFERENCES embedding_files(id),"
    "  row INTEGER NOT NULL,"
    "  PRIMARY KEY (model_id, image_id)) WITHOUT ROWID;"
    "CREATE INDEX embeddings_by_file ON embeddings(file_id, row);"
    /* Images the embed stage could not decode: skipped by later runs of that model. */
    "CREATE TABLE embedding_failures ("
    "  image_id INTEGER NOT NULL REFERENCES images(id),"
    "  model_id INTEGER NOT NULL REFERENCES models(id),"
    "  error TEXT NOT NULL,"
    "  run_id INTEGER REFERENCES runs(id),"
    "  PRIMARY KEY (model_id, image_id)) WITHOUT ROWID;"
    "CREATE VIEW v_models AS"
    "  SELECT name, path, sha256, arch, dim, params FROM models;"
    "CREATE VIEW v_embeddings AS"
    "  SELECT e.image_id, m.name AS model, f.path AS file, e.row"
    "  FROM embeddings e JOIN models m ON m.id = e.model_id"
    "  JOIN embedding_files f ON f.id = e.file_id;"
    "CREATE VIEW v_embedding_failures AS"
    "  SELECT x.image_id, m.name AS model, x.error, x.run_id"
    "  FROM embedding_failures x JOIN models m ON m.id = x.model_id;",
};

int lvd_manifest_schema_version(void)
{
    return (int)(sizeof migrations / sizeof migrations[0]);
}

const char *lvd_manifest_migration(int version)
{
    if (version < 1 || version > lvd_manifest_schema_version())
        return NULL;
    return migrations[version - 1];
}
