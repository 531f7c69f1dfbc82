/* The stage kit: what every lvd-* executable and every stage needs besides its own work, written
 * once.
 *
 * 1. Commands. An executable is a table of options plus one call, lvd_kit_main. The table gives
 *    parsing, the --help text (usage, about, one line per option with its default), the defaults
 *    (the values the option struct holds before parsing), range checks and the errors, which all
 *    have one shape, "<tool>: <what> (see --help)" with exit status 2:
 *      lvd-index: --bogus: unknown option (see --help)
 *      lvd-index: --db: missing value (see --help)
 *      lvd-index: --nprobe: '0' is not an integer in [1, 1048576] (see --help)
 *      lvd-index: --model is required (see --help)
 *    A failed run prints "<tool>: <message>" and exits 1; --help prints the text and exits 0.
 *    Options are --name VALUE or --name=VALUE (a one-letter name is -k VALUE); "--" ends them;
 *    operands (positional arguments) may stand anywhere.
 * 2. Manifests. lvd_kit_main (or lvd_kit_open) opens the manifest of the --db option in the
 *    command's mode (store/manifest.h: CREATE, WRITE = must exist, READ = read only, never
 *    created, immutable where WAL cannot be used) and takes the command's stage lock, keyed on
 *    the database file's identity. lvd_kit_lock_dir locks an output folder (lvd-export and
 *    lvd-report write into one).
 * 3. Runs. lvd_kit_run_start / lvd_kit_run_finish record a run in v_runs: stage, parameters,
 *    counts, ok / failed / interrupted. Starting a run marks every run that a dead process left
 *    'running' as interrupted, whatever its stage (store/manifest.h, run locks).
 * 4. Lookups: a model by name (lvd_model_find), a source by name and role (lvd_source_find), and
 *    the embedding rows of a model (lvd_kit_embeddings: one statement over view v_embeddings).
 *
 * Example, a whole executable:
 *
 *   static int run(lvd_manifest *m, void *ctx, lvd_error *err)
 *   {
 *       const my_options *o = ctx;
 *       int64_t run_id;
 *       cJSON *params = cJSON_CreateObject();
 *       cJSON_AddNumberToObject(params, "k", o->k);
 *       if (lvd_kit_run_start(m, "mystage", params, &run_id, err))
 *           return -1;
 *       int rc = do_the_work(m, o, err);
 *       return lvd_kit_run_finish(m, run_id, rc, NULL, NULL, err);
 *   }
 *
 *   static const char help[] = "--db DB --model NAME [options]\n"
 *                              "\n"
 *                              "What it does, in a paragraph.";
 *
 *   int main(int argc, char **argv)
 *   {
 *       my_options o = {.k = 64};
 *       const lvd_kit_opt opts[] = {
 *           LVD_OPT_DB(o.db),
 *           LVD_OPT_MODEL(o.model, "registered model"),
 *           LVD_OPT_INT("k", "K", o.k, 1, 4096, "neighbours searched per image"),
 *           LVD_OPT_END,
 *       };
 *       const lvd_kit_cmd cmd = {"lvd-mystage", help, opts, run, &o, .db = LVD_KIT_WRITE};
 *       return lvd_kit_main(&cmd, argc, argv);
 *   }
 *
 * --help then prints "  -k K   neighbours searched per image (default 64)". */
#ifndef LVD_KIT_KIT_H
#define LVD_KIT_KIT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "store/error.h"
#include "store/manifest.h"

/* ---- 1. Commands ---------------------------------------------------------------------------- */

typedef enum lvd_kit_kind {
    LVD_KIT_END = 0, /* ends the table */
    LVD_KIT_STR,     /* a string: dest is a const char * */
    LVD_KIT_INT,     /* an integer in [min, max], stored times scale into an integer of size bytes
                        (int, int64_t, size_t, uint32_t, ...) */
    LVD_KIT_BYTES,   /* as LVD_KIT_INT, with an optional K, M or G suffix (x 1024, 1024^2, 1024^3)
                        applied before the range check */
    LVD_KIT_NUM,     /* a finite number in [lo, hi], stored times scale into a float or a double */
    LVD_KIT_FLAG,    /* no value: stores set into an int */
    LVD_KIT_FN,      /* the value is handed to fn */
} lvd_kit_kind;

typedef struct lvd_kit_opt lvd_kit_opt;

struct lvd_kit_opt {
    lvd_kit_kind kind;
    const char *name; /* "db" is --db; a one-letter name is -k */
    const char *arg;  /* the value's name in --help ("DB"); NULL for a flag */
    const char *help; /* one line; '\n' continues it on the next */
    void *dest;
    size_t size;      /* sizeof the destination (INT, BYTES, NUM) */
    int64_t min, max; /* range of INT and BYTES (after the suffix, before scale) */
    double lo, hi;    /* range of NUM */
    double scale;     /* stored = given x scale (a whole number for INT and BYTES); 0 means 1 */
    int zero;         /* INT, BYTES, NUM: 0 is accepted too (it means off) */
    int set;          /* FLAG: the value stored */
    int required;     /* the command fails without it */
    const char *def;  /* the default shown in --help; NULL: the destination's value before parsing
                         (numbers, strings), "" to show none */
    int (*fn)(const lvd_kit_opt *o, const char *value, lvd_error *err); /* FN */
};

/* Table entries. The variable arguments are the help string followed by any designators
 * (.required = 1, .def = "...", .scale = 1 << 20, .zero = 1). A string's destination must be a
 * const char *, a flag's an int, a number's a float or a double (checked at compile time). */
#define LVD_KIT_STR_DEST(d)  _Generic(&(d), const char ** : &(d))
#define LVD_KIT_FLAG_DEST(d) _Generic(&(d), int * : &(d))
#define LVD_KIT_NUM_DEST(d)  _Generic(&(d), float * : &(d), double * : &(d))
#define LVD_OPT_STR(name_, arg_, dest_, ...)                                                       \
    {                                                                                              \
        .kind = LVD_KIT_STR, .name = name_, .arg = arg_, .dest = LVD_KIT_STR_DEST(dest_),          \
        .help = __VA_ARGS__                                                                        \
    }
#define LVD_OPT_INT(name_, arg_, dest_, min_, max_, ...)                                           \
    {                                                                                              \
        .kind = LVD_KIT_INT, .name = name_, .arg = arg_, .dest = &(dest_), .size = sizeof(dest_),  \
        .min = min_, .max = max_, .help = __VA_ARGS__                                              \
    }
#define LVD_OPT_BYTES(name_, arg_, dest_, min_, max_, ...)                                         \
    {                                                                                              \
        .kind = LVD_KIT_BYTES, .name = name_, .arg = arg_, .dest = &(dest_),                       \
        .size = sizeof(dest_), .min = min_, .max = max_, .help = __VA_ARGS__                       \
    }
#define LVD_OPT_NUM(name_, arg_, dest_, lo_, hi_, ...)                                             \
    {                                                                                              \
        .kind = LVD_KIT_NUM, .name = name_, .arg = arg_, .dest = LVD_KIT_NUM_DEST(dest_),          \
        .size = sizeof(dest_), .lo = lo_, .hi = hi_, .help = __VA_ARGS__                           \
    }
#define LVD_OPT_FLAG(name_, dest_, set_, ...)                                                      \
    {                                                                                              \
        .kind = LVD_KIT_FLAG, .name = name_, .dest = LVD_KIT_FLAG_DEST(dest_), .set = set_,        \
        .help = __VA_ARGS__                                                                        \
    }
#define LVD_OPT_FN(name_, arg_, dest_, fn_, ...)                                                   \
    {                                                                                              \
        .kind = LVD_KIT_FN, .name = name_, .arg = arg_, .dest = &(dest_), .fn = fn_,               \
        .help = __VA_ARGS__                                                                        \
    }
#define LVD_OPT_END                                                                                \
    {                                                                                              \
        .kind = LVD_KIT_END                                                                        \
    }

/* For an LVD_KIT_FN parser: value as a number in [o->lo, o->hi] (o->zero: or 0), failing with the
 * kit's message ("'x' is not a number in [lo, hi]"; the kit adds the option name). */
int lvd_kit_number(const lvd_kit_opt *o, const char *value, double *out, lvd_error *err);

/* Stores value into o's destination with o's checks, as parsing does (errors start with the
 * option's name): for an option whose reading depends on others, applied from a check. */
int lvd_kit_set(const lvd_kit_opt *o, const char *value, lvd_error *err);

/* Whether and how lvd_kit_main opens the manifest named by the table's --db option. */
typedef enum lvd_kit_db {
    LVD_KIT_NO_DB = 0, /* it does not (the run opens what it needs itself) */
    LVD_KIT_CREATE,    /* LVD_MANIFEST_CREATE */
    LVD_KIT_WRITE,     /* LVD_MANIFEST_WRITE: it must exist */
    LVD_KIT_READ,      /* LVD_MANIFEST_READ: it must exist, and is only read */
} lvd_kit_db;

/* The operands (positional arguments) a command takes, e.g.
 *   const lvd_kit_operands inputs = {"at least one INPUT", 1, -1, &o.inputs, &o.n_inputs}; */
typedef struct lvd_kit_operands {
    const char *name;          /* how they are named in messages */
    int min, max;              /* how many must and may be given; max -1: any number */
    const char *const **where; /* set to the first (they are gathered at the front of argv) */
    int *n;                    /* set to how many were given (NULL allowed) */
} lvd_kit_operands;

/* A command. The first six fields are usually all there is:
 *   const lvd_kit_cmd cmd = {"lvd-index", help, opts, run, &o, .db = LVD_KIT_WRITE}; */
typedef struct lvd_kit_cmd {
    const char *name; /* "lvd-index": the first word of every message */
    const char *help; /* the usage lines (what follows the name; several for several forms), an
                         empty line, then the paragraphs of --help before the options */
    const lvd_kit_opt *opts; /* the table, ended by LVD_OPT_END */
    /* After parsing, lvd_kit_main calls check (when set; a failure is bad usage, exit 2), opens
     * the --db manifest as db says, taking the stage lock `lock` (when set), calls run with that
     * manifest (NULL when none) and closes it. run returns 0 (exit 0), -1 with err filled
     * (printed, exit 1) or an exit status of its own (> 0, printed nothing). */
    int (*run)(lvd_manifest *m, void *ctx, lvd_error *err);
    void *ctx;
    lvd_kit_db db;
    const char *lock;
    int (*check)(void *ctx, lvd_error *err);
    const lvd_kit_operands *operands; /* NULL: none are taken */
    const char *footer; /* the last paragraph of --help; NULL: the exit statuses 0, 1 and 2 */
} lvd_kit_cmd;

/* Parses argv into the table's destinations and the operands. Returns 0 when parsed, 1 after
 * printing --help (which wins wherever it stands), -1 after printing a usage error. */
int lvd_kit_parse(const lvd_kit_cmd *cmd, int argc, char **argv);

/* Prints cmd's --help text to stdout. */
void lvd_kit_help(const lvd_kit_cmd *cmd);

/* Prints "<tool>: <message> (see --help)" on stderr; returns 2, the exit status of bad usage. */
int lvd_kit_usage_error(const char *tool, const char *msg);

/* Prints "<tool>: <message>" on stderr; returns 1, the exit status of a failed run. */
int lvd_kit_fail(const char *tool, const lvd_error *err);

/* Parse, check, open, run, close, as described at lvd_kit_cmd; returns the exit status. */
int lvd_kit_main(const lvd_kit_cmd *cmd, int argc, char **argv);

/* ---- 2. Manifests and folders ------------------------------------------------------------- */

/* The options every stage has: --db DB (required) and --model NAME (required). */
#define LVD_OPT_DB(dest_)         LVD_OPT_STR("db", "DB", dest_, "manifest database", .required = 1)
#define LVD_OPT_MODEL(dest_, ...) LVD_OPT_STR("model", "NAME", dest_, __VA_ARGS__, .required = 1)

/* Opens the manifest at db in mode and, when lock is not NULL, takes that stage lock (failing
 * with "another lvd-<lock> is working on this manifest"). *m is NULL on failure. */
int lvd_kit_open(const char *db, lvd_manifest_mode mode, const char *lock, lvd_manifest **m,
                 lvd_error *err);

/* Locks the existing folder dir for the writer `who` ("lvd-export") until *fd is closed (flock on
 * the folder itself, so through any path to it). Fails with "<dir>: another <who> is writing
 * into this folder" while another process holds it. */
int lvd_kit_lock_dir(const char *dir, const char *who, int *fd, lvd_error *err);

/* ---- 3. Runs ------------------------------------------------------------------------------ */

/* Records the start of a run of stage with params (JSON, taken and freed; NULL gives {}) and
 * writes its id. Fails on a read-only manifest. */
int lvd_kit_run_start(lvd_manifest *m, const char *stage, cJSON *params, int64_t *run,
                      lvd_error *err);

/* Records the end of run: status, or when it is NULL "ok" for rc == 0 and "failed" otherwise, and
 * counts (taken and freed; NULL gives {}). When rc != 0, err keeps the stage's own message
 * (a failure to record is then not reported). Returns -1 when rc != 0 or recording failed. */
int lvd_kit_run_finish(lvd_manifest *m, int64_t run, int rc, const char *status, cJSON *counts,
                       lvd_error *err);

/* Monotonic seconds, and CPU seconds of the process (all threads): for a run's timings. */
double lvd_kit_now(void);
double lvd_kit_cpu_now(void);

/* ---- 4. Lookups --------------------------------------------------------------------------- */

typedef enum lvd_model_features {
    LVD_FEATURES_CLS = 0,       /* the cls token */
    LVD_FEATURES_CLS_PATCHMEAN, /* cls token and mean patch token, concatenated */
    LVD_FEATURES_EXTERNAL,      /* imported rows of unknown origin */
} lvd_model_features;

/* A row of the models table (see embed/model_registry.h for what the fields mean). */
typedef struct lvd_model_record {
    int64_t id;
    char name[65];
    char path[PATH_MAX]; /* "" when the model has no weights file */
    char sha256[65];     /* "" when the model has no weights file */
    char arch[256];
    int dim; /* values per embedding row */
    int64_t params;
    lvd_model_features features;
    char random_spec[16]; /* "" unless a built-in random model */
    uint64_t seed;        /* its seed */
} lvd_model_record;

/* "cls", "cls+patchmean" or "external". */
const char *lvd_model_features_name(lvd_model_features f);

/* Parses a features name; -1 (err filled) when unknown. */
int lvd_model_features_parse(const char *name, lvd_model_features *f, lvd_error *err);

/* An LVD_KIT_FN parser for --features: cls or cls+patchmean, stored into an int (or an
 * lvd_model_features). */
int lvd_kit_features_opt(const lvd_kit_opt *o, const char *value, lvd_error *err);

/* Looks the model called name up and fills out. When found is not NULL it tells whether the model
 * exists (absence is no error); when it is NULL absence fails with "<db>: no model named '<name>'
 * (register it with lvd-model add)". */
int lvd_model_find(lvd_manifest *m, const char *name, lvd_model_record *out, int *found,
                   lvd_error *err);

/* Looks the source called name up among the sources of role (any role when role < 0) and writes
 * its id; name NULL gives 0 (no source: every source). found as for lvd_model_find; absence fails
 * with "<db>: no source named '<name>'" ("no seed source named ..." with a role). */
int lvd_source_find(lvd_manifest *m, const char *name, int role, int64_t *id, int *found,
                    lvd_error *err);

/* Which embedding rows of a model a stage reads. The statement is
 *   SELECT e.image_id, e.file, e.row[, <tag>] FROM v_embeddings e
 *     JOIN images i ON i.id = e.image_id JOIN sources s ON s.id = i.source_id <join>
 *     WHERE e.model = <the model of id ?1> [AND (<where>)] ORDER BY <order>
 * so where, join and tag may use e, i, s, ?1 (the model id) and ?2, ?3, ... (the binds). */
typedef struct lvd_kit_rows {
    const char *where; /* a condition, or NULL */
    const char *join;  /* more JOIN clauses, or NULL */
    const char *tag;   /* an integer expression returned as a fourth column, or NULL */
    const char *order; /* NULL: e.image_id */
} lvd_kit_rows;

/* Prepares the statement of q for model_id with binds[k] bound to ?(k + 2). The caller steps and
 * finalizes *st: columns image_id, file path, row[, tag]. */
int lvd_kit_embeddings(lvd_manifest *m, int64_t model_id, const lvd_kit_rows *q,
                       const int64_t *binds, int n_binds, sqlite3_stmt **st, lvd_error *err);

#endif
