/* schema: checks a JSON value against the subset of JSON Schema that tool definitions use:
 * type (a name or a list of names), properties, required, enum, items, additionalProperties
 * (false or a schema). Other keywords are ignored, so a schema using them is checked only as far
 * as this subset goes. Stateless and thread-safe; used by the agentic mode (bench/agentic.c) to
 * decide whether a tool call's arguments are clean.
 *
 *     char why[256];
 *     if (!schema_check(tool_params, args, why, sizeof why)) printf("bad call: %s\n", why);
 */
#ifndef CAIRN_BENCH_SCHEMA_H
#define CAIRN_BENCH_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* True when value satisfies schema. On false, why (if non-NULL) gets the first violation with
 * its JSON path ("$.location: expected string, got integer"). A NULL schema accepts anything. */
bool schema_check(const json_t *schema, const json_t *value, char *why, size_t why_len);

#endif
