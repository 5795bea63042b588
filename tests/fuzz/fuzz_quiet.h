/* fuzz_quiet: LLVMFuzzerInitialize for a fuzz target whose only set-up is silence: malformed input
 * is the point, so the library's error lines are switched off once, before the first input
 * (libFuzzer and tests/fuzz/replay.c both call it). Included by the target's .c file. */
#ifndef CAIRN_TESTS_FUZZ_QUIET_H
#define CAIRN_TESTS_FUZZ_QUIET_H

#include "base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    log_set_level(LOG_LEVEL_OFF);
    return 0;
}

#endif
