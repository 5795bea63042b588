/* status: the error codes every fallible cairn function returns.
 *
 * Failures caused by input or environment (files, JSON, HTTP, memory budgets, devices) return an
 * enum status; the function that detects the failure logs the detail once (LOG_ERR) and callers
 * add context instead of logging again. Broken invariants are bugs and use CHECK (base/log.h).
 *
 *     enum status st = model_load(dir, &m);
 *     if (st != STATUS_OK) return st;   // detail already logged where it failed
 */
#ifndef CAIRN_BASE_STATUS_H
#define CAIRN_BASE_STATUS_H

enum status {
    STATUS_OK = 0,
    STATUS_EINVAL,       // bad argument or request value
    STATUS_ENOMEM,       // allocation or memory budget exceeded
    STATUS_EIO,          // file or socket I/O failed
    STATUS_EFORMAT,      // malformed file or document (safetensors, JSON, template)
    STATUS_EUNSUPPORTED, // valid but not supported (architecture, config option, dtype)
    STATUS_EDEVICE,      // accelerator error
    STATUS_ECANCELED,    // request cancelled (client gone)
    STATUS_ENOTFOUND,    // missing file, tensor, model, route
    STATUS_EBUSY,        // queue full, try later
    STATUS_ETOOLONG,     // prompt or body longer than allowed
    STATUS_ETEMPLATE,    // chat template raised or failed to evaluate
    STATUS_EAUTH,        // missing or wrong API key
    STATUS_COUNT
};

const char *status_str(enum status st);

#endif
