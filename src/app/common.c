#include "app/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *app_default_model_dir(void)
{
    static char path[PATH_MAX + 32];
    const char *env = getenv("CAIRN_DEFAULT_MODEL");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;   // directory of the binary
            snprintf(path, sizeof path, "%s/../models/default", exe);
            if (is_dir(path)) return path;
            snprintf(path, sizeof path, "%s/models/default", exe);
            if (is_dir(path)) return path;
        }
    }
    return "models/default";
}

const char *app_default_backend(void)
{
    static const char *choice;
    if (choice) return choice;
    choice = "cpu";
    const char *env = getenv("CAIRN_BACKEND");
    if (env && *env) return choice = env;
#ifdef CAIRN_HAVE_CUDA
    struct backend *be;
    int saved = log_get_level();
    log_set_level(LOG_LEVEL_OFF);   // probing: a machine without a GPU is not an error
    if (backend_new("cuda", NULL, &be) == STATUS_OK) {
        backend_free(be);
        choice = "cuda";
    }
    log_set_level((enum log_level)saved);
    if (strcmp(choice, "cuda")) LOG_INFO("no usable CUDA GPU found; using the CPU backend");
#endif
    return choice;
}

enum status app_model_open(const char *dir, const char *backend, int n_threads, struct app_model *out)
{
    memset(out, 0, sizeof *out);
    enum status st = model_load(dir, &out->m);
    if (st != STATUS_OK) return st;
    struct backend_cfg cfg = { .n_threads = n_threads };
    st = backend_new(backend ? backend : app_default_backend(), &cfg, &out->be);
    if (st != STATUS_OK) goto out_free_model;
    st = model_prepare(out->m, out->be);
    if (st != STATUS_OK) goto out_free_backend;
    return STATUS_OK;

out_free_backend:
    backend_free(out->be);
out_free_model:
    model_free(out->m);
    memset(out, 0, sizeof *out);
    return st;
}

void app_model_close(struct app_model *am)
{
    model_free(am->m);
    backend_free(am->be);
    memset(am, 0, sizeof *am);
}

bool flag_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad)
{
    if (strcmp(argv[*i], name)) return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", name);
        *bad = true;
        return true;
    }
    *out = argv[++*i];
    return true;
}

bool flag_int(int argc, char **argv, int *i, const char *name, int *out, bool *bad)
{
    const char *s;
    if (!flag_str(argc, argv, i, name, &s, bad)) return false;
    if (*bad) return true;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || end == s || errno || v < INT_MIN || v > INT_MAX) {
        fprintf(stderr, "%s: not an integer: %s\n", name, s);
        *bad = true;
        return true;
    }
    *out = (int)v;
    return true;
}

bool flag_float(int argc, char **argv, int *i, const char *name, float *out, bool *bad)
{
    const char *s;
    if (!flag_str(argc, argv, i, name, &s, bad)) return false;
    if (*bad) return true;
    char *end;
    float v = strtof(s, &end);
    if (*end || end == s) {
        fprintf(stderr, "%s: not a number: %s\n", name, s);
        *bad = true;
        return true;
    }
    *out = v;
    return true;
}
