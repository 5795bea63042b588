/* common: what several subcommands share: finding the built-in default model, opening a model on
 * a backend, and small flag-parsing helpers. */
#ifndef CAIRN_APP_COMMON_H
#define CAIRN_APP_COMMON_H

#include <stdbool.h>

#include "backend/backend.h"
#include "model/model.h"

/* The built-in default model directory: $CAIRN_DEFAULT_MODEL, else models/default next to the
 * binary's parent directory (build/cairn -> models/default), else ./models/default. */
const char *app_default_model_dir(void);

/* Name of the backend to use when none is asked for: cuda when built with CUDA and a GPU is
 * present, else cpu. */
const char *app_default_backend(void);

struct app_model {
    struct model   *m;
    struct backend *be;
};

/* Loads dir, creates the backend (name NULL = default) and prepares the weights on it.
 * Errors are logged; returns non-OK status. */
enum status app_model_open(const char *dir, const char *backend, int n_threads, struct app_model *out);
void        app_model_close(struct app_model *am);

/* Flag helpers: if argv[*i] is `name`, consumes its value into *out and returns true.
 * A missing value is reported and sets *bad. */
bool flag_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad);
bool flag_int(int argc, char **argv, int *i, const char *name, int *out, bool *bad);
bool flag_float(int argc, char **argv, int *i, const char *name, float *out, bool *bad);

#endif
