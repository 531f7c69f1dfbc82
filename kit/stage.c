/* Parts 1 to 3 of kit/kit.h beyond parsing: lvd_kit_main, opening manifests with their stage
 * lock, folder locks and the run record. */
#include "kit/kit.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int lvd_kit_open(const char *db, lvd_manifest_mode mode, const char *lock, lvd_manifest **m,
                 lvd_error *err)
{
    if (lvd_manifest_open_mode(db, mode, m, err) != 0)
        return -1;
    if (lock && lvd_manifest_lock(*m, lock, err) != 0) {
        lvd_manifest_close(*m);
        *m = NULL;
        return -1;
    }
    return 0;
}

int lvd_kit_lock_dir(const char *dir, const char *who, int *fd, lvd_error *err)
{
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return lvd_fail(err, "%s: cannot open folder: %s", dir, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    close(*fd);
    *fd = -1;
    if (e == EWOULDBLOCK)
        return lvd_fail(err, "%s: another %s is writing into this folder", dir, who);
    return lvd_fail(err, "%s: cannot lock the folder: %s", dir, strerror(e));
}

int lvd_kit_run_start(lvd_manifest *m, const char *stage, cJSON *params, int64_t *run,
                      lvd_error *err)
{
    int rc = lvd_manifest_run_start(m, stage, params, run, err);
    cJSON_Delete(params);
    return rc;
}

int lvd_kit_run_finish(lvd_manifest *m, int64_t run, int rc, const char *status, cJSON *counts,
                       lvd_error *err)
{
    lvd_error ignored; /* after a failed stage, its own message is the one worth keeping */
    if (!status)
        status = rc ? "failed" : "ok";
    int frc = lvd_manifest_run_finish(m, run, status, counts, rc ? &ignored : err);
    cJSON_Delete(counts);
    return rc || frc ? -1 : 0;
}

static double seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double lvd_kit_now(void)
{
    return seconds(CLOCK_MONOTONIC);
}

double lvd_kit_cpu_now(void)
{
    return seconds(CLOCK_PROCESS_CPUTIME_ID);
}

int lvd_kit_main(const lvd_kit_cmd *cmd, int argc, char **argv)
{
    int p = lvd_kit_parse(cmd, argc, argv);
    if (p != 0)
        return p > 0 ? 0 : 2;
    lvd_error err;
    lvd_error_clear(&err);
    if (cmd->check && cmd->check(cmd->ctx, &err) != 0)
        return lvd_kit_usage_error(cmd->name, err.msg);
    static const lvd_manifest_mode modes[] = {LVD_MANIFEST_CREATE, LVD_MANIFEST_CREATE,
                                              LVD_MANIFEST_WRITE, LVD_MANIFEST_READ};
    const char *db = NULL;
    for (const lvd_kit_opt *o = cmd->opts; cmd->db && o && o->kind != LVD_KIT_END; o++)
        if (o->kind == LVD_KIT_STR && strcmp(o->name, "db") == 0)
            db = *(const char **)o->dest;
    lvd_manifest *m = NULL;
    if (db && lvd_kit_open(db, modes[cmd->db], cmd->lock, &m, &err) != 0)
        return lvd_kit_fail(cmd->name, &err);
    int rc = cmd->run(m, cmd->ctx, &err);
    lvd_manifest_close(m);
    return rc < 0 ? lvd_kit_fail(cmd->name, &err) : rc;
}
