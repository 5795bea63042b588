#include "app/common.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend_env.h"
#include "base/log.h"
#include "dist/collective.h"
#include "engine/engine.h"
#include "model/shard.h"
#include "text/tokenizer.h"

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

/* Device backends: a clear error when the weights cannot fit, before any copy starts. */
static enum status check_device_room(const struct model *m, struct backend *be, const char *what)
{
    if (!be->ops->mem_info || !be->ops->weight_prepare) return STATUS_OK;
    size_t free_b = 0, total_b = 0;
    be->ops->mem_info(be, &free_b, &total_b);
    if (m->weight_bytes <= free_b) return STATUS_OK;
    const double gib = (double)(1ull << 30);
    LOG_ERR("%s: %.2f GiB of weights do not fit in %s memory: %.2f of %.2f GiB free", what,
            (double)m->weight_bytes / gib, be->ops->name, (double)free_b / gib, (double)total_b / gib);
    return STATUS_ENOMEM;
}

static enum status backend_open(const char *backend, int n_threads, int device, struct backend **out)
{
    struct backend_cfg cfg = { .n_threads = n_threads, .device = device };
    backend_cfg_from_env(&cfg);   // the CAIRN_CUDA_* switches and CAIRN_PROFILE (docs/server.md)
    return backend_new(backend ? backend : app_default_backend(), &cfg, out);
}

/* The model's weights onto its backend, once they are known to fit there. Weights synthesized in
 * device memory are there already (model_synthesize_on checked the room). src names the model. */
static enum status prepare_weights(struct app_model *am, const char *src)
{
    enum status st = am->m->dev_weights ? STATUS_OK : check_device_room(am->m, am->be, src);
    return st == STATUS_OK ? model_prepare(am->m, am->be) : st;
}

enum status app_model_open(const char *dir, const char *backend, int n_threads, struct app_model *out)
{
    memset(out, 0, sizeof *out);
    enum status st = model_load(dir, &out->m);
    if (st == STATUS_OK) st = backend_open(backend, n_threads, 0, &out->be);
    if (st == STATUS_OK) st = prepare_weights(out, dir);
    if (st != STATUS_OK) app_model_close(out);   // what was made, the model before its backend
    return st;
}

enum status app_model_synthesize(const char *config, uint64_t seed, const char *backend, int n_threads,
                                 struct app_model *out)
{
    memset(out, 0, sizeof *out);
    // The backend comes first: the weights are made in its memory (and freed before it).
    enum status st = backend_open(backend, n_threads, 0, &out->be);
    if (st == STATUS_OK) st = model_synthesize_on(config, seed, out->be, &out->m);
    if (st == STATUS_OK) st = prepare_weights(out, config);
    if (st != STATUS_OK) app_model_close(out);
    return st;
}

enum dtype app_default_kv_dtype(const struct backend *be)
{
    return be && !strcmp(be->ops->name, "cuda") ? DTYPE_BF16 : DTYPE_F32;
}

bool app_parse_kv_dtype(const char *cmd, const char *s, enum dtype *out)
{
    int dt = dtype_parse_kv(s);
    if (dt < 0) {
        fprintf(stderr, "%s: --kv-dtype must be f32, f16, bf16 or fp8 (= f8e4m3) (got '%s')\n", cmd, s);
        return false;
    }
    *out = (enum dtype)dt;
    return true;
}

enum status app_tokenizer_check(const struct tokenizer *tk, const struct model *m, const char *dir)
{
    int n_tk = tokenizer_vocab_size(tk);
    if (n_tk <= m->hp.n_vocab) return STATUS_OK;
    LOG_ERR("%s: the tokenizer has %d token ids but the model's vocabulary has %d: it belongs to another model "
            "(with --synthetic, pass --tokenizer DIR of the config's family)", dir, n_tk, m->hp.n_vocab);
    return STATUS_EINVAL;
}

bool app_parse_bytes(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return false;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return false;
    *out = (size_t)(v * mul);
    return true;
}

/* --tensor-parallel on cuda: one GPU per rank, devices 0 .. n_ranks - 1, all visible. */
static enum status check_gpus(const char *backend, int n_ranks)
{
    int n_gpus = backend_cuda_device_count();   // 0 without CUDA or a driver
    if (n_gpus >= n_ranks) return STATUS_OK;
#ifdef CAIRN_HAVE_CUDA
    const char *why = "";
#else
    const char *why = " (this binary was built without CUDA)";
#endif
    LOG_ERR("--tensor-parallel %d on %s needs %d GPUs, one per rank; %d visible%s", n_ranks, backend, n_ranks, n_gpus,
            why);
    return STATUS_EINVAL;
}

enum status app_model_open_sharded(const char *dir, const char *backend, int n_threads, int n_ranks,
                                   bool expert_parallel, struct app_model *out)
{
    memset(out, 0, sizeof *out);
    const char *name = backend ? backend : app_default_backend();
    bool cuda = !strncmp(name, "cuda", 4);   // cuda, cuda-precise, cuda-deterministic
    if (n_ranks < 1 || n_ranks > APP_MAX_RANKS) {
        LOG_ERR("--tensor-parallel %d: between 1 and %d", n_ranks, APP_MAX_RANKS);
        return STATUS_EINVAL;
    }
    enum status st = cuda ? check_gpus(name, n_ranks) : STATUS_OK;
    if (st != STATUS_OK) return st;
    struct model *full;
    if ((st = model_load(dir, &full)) != STATUS_OK) return st;
    struct shard_plan plan;
    if ((st = shard_plan_make(&full->hp, &full->f, n_ranks, expert_parallel, &plan)) != STATUS_OK) goto out_free_full;
    int devices[APP_MAX_RANKS];
    for (int r = 0; r < n_ranks; r++) devices[r] = r;
    // NCCL first: a missing libnccl is refused before any weight is sliced or copied.
    st = cuda ? collective_nccl_new(n_ranks, devices, out->coll) : collective_threads_new(n_ranks, out->coll);
    if (st != STATUS_OK) goto out_free_full;
    out->n_ranks = n_ranks;
    // Each rank's weights are sliced from the host copy before any backend prepares them.
    for (int r = 0; r < n_ranks && st == STATUS_OK; r++) {
        if ((st = model_shard(full, &plan, r, &out->rank_m[r])) != STATUS_OK) break;
        if ((st = backend_open(name, n_threads, devices[r], &out->rank_be[r])) != STATUS_OK) break;
        if ((st = check_device_room(out->rank_m[r], out->rank_be[r], dir)) != STATUS_OK) break;
        st = model_prepare(out->rank_m[r], out->rank_be[r]);
    }
    model_free(full);
    out->m = out->rank_m[0];
    out->be = out->rank_be[0];
    if (st != STATUS_OK) app_model_close(out);
    else LOG_INFO("%s: %d ranks (%s parallel)%s", dir, n_ranks, expert_parallel ? "tensor and expert" : "tensor",
                  cuda ? ", one GPU each" : "");
    return st;

out_free_full:
    model_free(full);
    return st;
}

bool app_parallel_flags_ok(const char *cmd, int tensor_parallel, bool expert_parallel, const char *synthetic)
{
    if (tensor_parallel < 1) {
        fprintf(stderr, "%s: --tensor-parallel must be at least 1 (got %d)\n", cmd, tensor_parallel);
        return false;
    }
    if (expert_parallel && tensor_parallel < 2) {
        fprintf(stderr, "%s: --expert-parallel splits the experts over the ranks of --tensor-parallel N, N >= 2\n", cmd);
        return false;
    }
    if (tensor_parallel > 1 && synthetic) {
        fprintf(stderr, "%s: --tensor-parallel with --synthetic is not supported (shard a checkpoint)\n", cmd);
        return false;
    }
    return true;
}

enum status app_engine_new(const struct engine_cfg *cfg, struct app_model *am, struct engine **out)
{
    if (!am->coll[0]) return engine_new(cfg, am->m, am->be, out);
    struct engine_shards sh = { .n_ranks = am->n_ranks, .m = am->rank_m, .be = am->rank_be, .coll = am->coll };
    return engine_new_sharded(cfg, &sh, out);
}

void app_model_close(struct app_model *am)
{
    if (am->coll[0]) {   // sharded: the group (it may hold buffers of the backends), every rank's model and backend
        collective_free_group(am->coll, am->n_ranks);
        for (int r = 0; r < am->n_ranks; r++) {
            model_free(am->rank_m[r]);
            backend_free(am->rank_be[r]);
        }
    } else {
        model_free(am->m);
        backend_free(am->be);
    }
    memset(am, 0, sizeof *am);
}

bool app_parse_itl_ms(const char *s, double *out)
{
    if (!strcmp(s, "off")) {
        *out = -1;
        return true;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e7) return false;
    *out = v;
    return true;
}

/* The hub cache directory, by huggingface_hub's rules. */
static void hub_cache_dir(char *out, size_t cap)
{
    const char *v = getenv("HF_HUB_CACHE");
    if (v && *v) { snprintf(out, cap, "%s", v); return; }
    v = getenv("HF_HOME");
    if (v && *v) { snprintf(out, cap, "%s/hub", v); return; }
    v = getenv("HOME");
    snprintf(out, cap, "%s/.cache/huggingface/hub", v && *v ? v : ".");
}

static bool is_directory(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* a/b into out; false when it does not fit. */
static bool path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n >= 0 && (size_t)n < cap;
}

/* snapshots/<rev> of a repo cache: refs/main's revision, else the only or newest snapshot. */
static bool hub_snapshot(const char *repo_dir, char *out, size_t cap)
{
    char path[PATH_MAX], rev[128] = "";
    if (!path_join(path, sizeof path, repo_dir, "refs/main")) return false;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(rev, sizeof rev, f)) rev[strcspn(rev, " \r\n")] = 0;
        fclose(f);
    }
    if (!path_join(path, sizeof path, repo_dir, "snapshots")) return false;
    if (rev[0] && !strchr(rev, '/') && path_join(out, cap, path, rev) && is_directory(out)) return true;
    DIR *d = opendir(path);
    if (!d) return false;
    time_t newest = 0;
    bool found = false;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char snap[PATH_MAX];
        struct stat st;
        if (!path_join(snap, sizeof snap, path, e->d_name) || stat(snap, &st) != 0 || !S_ISDIR(st.st_mode) ||
            (found && st.st_mtime <= newest))
            continue;
        newest = st.st_mtime;
        found = path_join(out, cap, path, e->d_name);
    }
    closedir(d);
    return found;
}

bool app_resolve_model(const char *arg, char *dir, size_t dir_cap, char *name, size_t name_cap)
{
    if (is_directory(arg)) {
        snprintf(dir, dir_cap, "%s", arg);
        size_t n = strlen(arg);
        while (n > 1 && arg[n - 1] == '/') n--;   // "models/foo/" is served as "foo"
        const char *end = arg + n, *base = end;
        while (base > arg && base[-1] != '/') base--;
        snprintf(name, name_cap, "%.*s", (int)(end - base), base);
        return true;
    }
    const char *slash = strchr(arg, '/');
    bool repo_id = slash && slash != arg && slash[1] && !strchr(slash + 1, '/') && arg[0] != '.';
    char cache[PATH_MAX];
    hub_cache_dir(cache, sizeof cache);
    if (repo_id) {
        char repo[PATH_MAX], leaf[512];
        int n = snprintf(leaf, sizeof leaf, "models--%.*s--%s", (int)(slash - arg), arg, slash + 1);
        bool fits = n >= 0 && (size_t)n < sizeof leaf && path_join(repo, sizeof repo, cache, leaf);
        if (fits && hub_snapshot(repo, dir, dir_cap)) {
            snprintf(name, name_cap, "%s", arg);
            return true;
        }
        LOG_ERR("model '%s': not a directory, and not in the Hugging Face cache (%s/models--...; set HF_HUB_CACHE "
                "or HF_HOME to look elsewhere)", arg, cache);
        return false;
    }
    LOG_ERR("model directory '%s' not found", arg);
    return false;
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

/* A numeric flag: its value as an int (integer) or a float, in *v; a value that is not one is
 * reported and sets *bad (flag_str's contract otherwise). */
static bool flag_number(int argc, char **argv, int *i, const char *name, bool integer, double *v, bool *bad)
{
    const char *s;
    if (!flag_str(argc, argv, i, name, &s, bad)) return false;
    if (*bad) return true;
    char *end;
    errno = 0;
    bool in_range = true;
    if (integer) {
        long l = strtol(s, &end, 10);
        in_range = !errno && l >= INT_MIN && l <= INT_MAX;
        *v = (double)l;
    } else *v = strtof(s, &end);
    if (*end || end == s || !in_range) {
        fprintf(stderr, "%s: not %s: %s\n", name, integer ? "an integer" : "a number", s);
        *bad = true;
    }
    return true;
}

bool flag_int(int argc, char **argv, int *i, const char *name, int *out, bool *bad)
{
    double v;
    if (!flag_number(argc, argv, i, name, true, &v, bad)) return false;
    if (!*bad) *out = (int)v;
    return true;
}

bool flag_float(int argc, char **argv, int *i, const char *name, float *out, bool *bad)
{
    double v;
    if (!flag_number(argc, argv, i, name, false, &v, bad)) return false;
    if (!*bad) *out = (float)v;
    return true;
}

bool flag_model(int argc, char **argv, int *i, struct model_flags *f, bool *bad)
{
    return flag_str(argc, argv, i, "--backend", &f->backend, bad) ||
           flag_int(argc, argv, i, "--threads", &f->threads, bad) ||
           flag_str(argc, argv, i, "--synthetic", &f->synthetic, bad) ||
           flag_str(argc, argv, i, "--synth-seed", &f->synth_seed_s, bad) ||
           flag_str(argc, argv, i, "--kv-cache-bytes", &f->kv_bytes_s, bad) ||
           flag_str(argc, argv, i, "--kv-dtype", &f->kv_dtype_s, bad) ||
           flag_str(argc, argv, i, "--tokenizer", &f->tokenizer, bad) ||
           flag_str(argc, argv, i, "--tensor-parallel", &f->tensor_parallel_s, bad) ||
           flag_str(argc, argv, i, "--tensor-parallel-size", &f->tensor_parallel_s, bad) ||   // vLLM's spelling
           flag_str(argc, argv, i, "-tp", &f->tensor_parallel_s, bad) ||                      // vLLM's
           ((!strcmp(argv[*i], "--expert-parallel") || !strcmp(argv[*i], "--enable-expert-parallel")) &&
            (f->expert_parallel = true));
}

bool app_model_flags_parse(const char *cmd, struct model_flags *f)
{
    if (f->synth_seed_s) {
        char *end;
        f->synth_seed = strtoull(f->synth_seed_s, &end, 10);
        if (*end || end == f->synth_seed_s) {
            fprintf(stderr, "%s: bad --synth-seed '%s'\n", cmd, f->synth_seed_s);
            return false;
        }
    }
    if (f->kv_bytes_s && !app_parse_bytes(f->kv_bytes_s, &f->kv_bytes)) {
        fprintf(stderr, "%s: bad --kv-cache-bytes '%s'\n", cmd, f->kv_bytes_s);
        return false;
    }
    f->tensor_parallel = 1;
    if (f->tensor_parallel_s) {
        char *end;
        long n = strtol(f->tensor_parallel_s, &end, 10);
        if (*end || end == f->tensor_parallel_s || n < INT_MIN || n > INT_MAX) {
            fprintf(stderr, "%s: bad --tensor-parallel '%s'\n", cmd, f->tensor_parallel_s);
            return false;
        }
        f->tensor_parallel = (int)n;
    }
    if (!app_parallel_flags_ok(cmd, f->tensor_parallel, f->expert_parallel, f->synthetic)) return false;
    return !f->kv_dtype_s || app_parse_kv_dtype(cmd, f->kv_dtype_s, &f->kv_dtype);
}

enum status app_model_load(const struct model_flags *f, const char *dir, struct app_model *out)
{
    if (f->tensor_parallel > 1)
        return app_model_open_sharded(dir, f->backend, f->threads, f->tensor_parallel, f->expert_parallel, out);
    if (f->synthetic) return app_model_synthesize(f->synthetic, f->synth_seed, f->backend, f->threads, out);
    return app_model_open(dir, f->backend, f->threads, out);
}
