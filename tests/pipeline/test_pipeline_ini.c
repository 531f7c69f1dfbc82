/* Pipeline files: each kind of mistake gives one error line naming the file and the line. Runs
 * lvd-run --dry-run (args: lvd-run, lvd-fake) on small files. */
#include <libgen.h>

#include "tests/check.h"
#include "tests/pipeline/pipetest.h"

static const char *lvd_run;

/* Writes text as bad.ini, runs lvd-run on it, and checks the exit status and that the output
 * holds want. */
static void expect_error(const char *text, const char *want)
{
    pt_write("bad.ini", text);
    char *argv[] = {(char *)lvd_run, "bad.ini", "--db", "m.db", "--dry-run", NULL};
    int rc = pt_run(argv);
    CHECK_MSG(rc == 1, "exit status %d for '%s'", rc, want);
    CHECK_MSG(strstr(pt_output, want) != NULL, "wanted '%s' in: %s", want, pt_output);
    CHECK_MSG(pt_count(pt_output, "\n") == 1, "one line wanted, got: %s", pt_output);
    CHECK(access("m.db", F_OK) != 0); /* nothing created */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_pipeline_ini LVD-RUN LVD-FAKE\n");
        return 1;
    }
    lvd_run = pt_abs(argv[1]);
    char *fake = pt_abs(argv[2]);
    setenv("LVD_STAGE_PATH", dirname(fake), 1);
    unsetenv("LVD_TEST_UNSET");
    pt_scratch("ini");

    expect_error("[pipeline]\ndb = x.db\n\n[nosuchstage]\nkey = 1\n",
                 "bad.ini:4: unknown stage 'nosuchstage': no executable lvd-nosuchstage");
    expect_error("[fake:a]\nname = a\nthis line has no equals sign or brackets ]\n",
                 "bad.ini:3: bad line: 'this line has no equals sign or brackets ]' is not an "
                 "option name");
    expect_error("[fake:a]\nname = a\n[unclosed\n", "bad.ini:3: syntax error");
    expect_error("; comment\nname = a\n[fake:a]\n", "bad.ini:2: 'name' is outside a section");
    expect_error("[fake:a]\n[fake:b]\n\n[fake:a]\n",
                 "bad.ini:4: duplicate step [fake:a] (first at line 1)");
    expect_error("[fake]\nreads = images bogus\n", "bad.ini:2: unknown manifest fact 'bogus'");
    expect_error("[fake]\nreads = images:\n", "bad.ini:2: unknown manifest fact 'images:'");
    expect_error("[fake]\nname = a\ninput = ${LVD_TEST_UNSET}/x\n",
                 "bad.ini:3: ${LVD_TEST_UNSET} is not set");
    expect_error("[pipeline]\ndb = x.db\n", "bad.ini:2: no steps");
    expect_error("[Fake]\n", "bad.ini:1: invalid step name [Fake]");
    expect_error("[fake:]\n", "bad.ini:1: invalid step name [fake:]");
    expect_error("[pipeline]\ndatabase = x\n[fake]\n", "bad.ini:2: unknown key 'database'");
    expect_error("[fake]\nargs =\n", "bad.ini:2: 'args' needs a value");
    expect_error("[fake]\n--name = a\n", "bad.ini:2: bad line: '--name' is not an option name");

    /* A valid file: the command line follows the documented rule, env values expand. */
    setenv("LVD_TEST_DIR", "/some/where", 1);
    pt_write("good.ini", "[pipeline]\n"
                         "db = from-file.db\n"
                         "[fake:one]  ; inline comment\n"
                         "args = first\n"
                         "name = one\n"
                         "input = ${LVD_TEST_DIR}/a\n"
                         "input = b\n"
                         "flag\n"
                         "empty =\n"
                         "k = 64\n"
                         "args = second\n"
                         "[fake:two]\n");
    char *dry[] = {(char *)lvd_run, "good.ini", "--dry-run", NULL};
    CHECK(pt_run(dry) == 0);
    CHECK(strstr(pt_output, "lvd-fake first second --db from-file.db --name one --input "
                            "/some/where/a --input b --flag --empty -k 64\n") != NULL);
    CHECK(strstr(pt_output, "[2/2] fake:two: run (never ran)") != NULL);
    CHECK(access("from-file.db", F_OK) != 0);

    char *from_bad[] = {(char *)lvd_run, "good.ini", "--dry-run", "--from", "nope", NULL};
    CHECK(pt_run(from_bad) == 1);
    CHECK(strstr(pt_output, "--from nope: no such step or stage in good.ini") != NULL);
    char *no_db[] = {(char *)lvd_run, "bad.ini", "--dry-run", NULL};
    pt_write("bad.ini", "[fake]\n");
    CHECK(pt_run(no_db) == 2);
    CHECK(strstr(pt_output, "no manifest") != NULL);
    char *missing[] = {(char *)lvd_run, "absent.ini", NULL};
    CHECK(pt_run(missing) == 1);
    CHECK(strstr(pt_output, "absent.ini: cannot open") != NULL);
    free(fake);
    free((char *)lvd_run);
    return check_finish();
}
