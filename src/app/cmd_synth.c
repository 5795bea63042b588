/* cmd_synth: `cairn synth --arch ARCH --config CONFIG.json --out DIR [--seed N] [--tokenizer DIR]
 * [--threads N] [--shard-gb G] [--dry-run]`: writes a random-weight bf16 checkpoint (model/synth.h), then
 * loads it back as a self-check and prints one summary line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/log.h"
#include "model/model.h"
#include "model/synth.h"

static void synth_usage(FILE *f)
{
    fprintf(f, "usage: cairn synth [--arch ARCH] --config CONFIG.json --out DIR [--seed N] [--tokenizer DIR]\n"
               "                   [--threads N] [--shard-gb G] [--dry-run]\n"
               "  Writes config.json + random bf16 safetensors (sharded above 4 GB per shard).\n"
               "  --arch overrides the config's \"architectures\"; ready configs are in configs/.\n"
               "  --dry-run validates the config and prints the plan without writing anything.\n");
}

int cmd_synth(int argc, char **argv)
{
    struct synth_opts o = { .seed = 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            synth_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--dry-run")) {
            o.dry_run = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "cairn synth: %s needs a value\n", a);
            synth_usage(stderr);
            return 2;
        }
        char *end = NULL;
        if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--config")) o.config_path = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer_dir = v;
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--threads")) o.n_threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--shard-gb")) {
            double gb = strtod(v, &end);
            if (gb > 0) o.shard_bytes = (uint64_t)(gb * 1e9);
            else end = NULL;
        } else {
            fprintf(stderr, "cairn synth: unknown option %s\n", a);
            synth_usage(stderr);
            return 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "cairn synth: bad number for %s: %s\n", a, v);
            return 2;
        }
        if (!end && !strcmp(a, "--shard-gb")) {
            fprintf(stderr, "cairn synth: --shard-gb must be > 0\n");
            return 2;
        }
        i++;
    }
    if (!o.config_path || !o.out_dir) {
        synth_usage(stderr);
        return 2;
    }
    struct synth_result r;
    enum status st = synth_write(&o, &r);
    if (st != STATUS_OK) {
        fprintf(stderr, "cairn synth: failed: %s\n", status_str(st));
        return 1;
    }
    if (o.dry_run) {
        printf("%s: would write %d tensors, %.3f B parameters, %.2f GB in %d shard%s\n", o.out_dir, r.n_tensors,
               (double)r.n_params / 1e9, (double)r.bytes / 1e9, r.n_shards, r.n_shards > 1 ? "s" : "");
        return 0;
    }
    struct model *m;
    if ((st = model_load(o.out_dir, &m)) != STATUS_OK) {
        fprintf(stderr, "cairn synth: wrote %s but it does not load back: %s\n", o.out_dir, status_str(st));
        return 1;
    }
    printf("%s: %s, %.3f B parameters, %.2f GB of bf16 weights, seed %llu\n", o.out_dir, m->hp.arch,
           (double)m->n_params / 1e9, (double)m->weight_bytes / 1e9, (unsigned long long)o.seed);
    model_free(m);
    return 0;
}
