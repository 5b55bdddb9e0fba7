/* A small pthread pool: run `ntasks` independent tasks on up to `threads` threads (the caller
 * is one of them). Tasks are handed out one at a time from an atomic counter, so which thread
 * runs a task varies from call to call: each task must write only its own outputs, and then the
 * result does not depend on the thread count or the schedule. */
#ifndef QTK_POOL_H
#define QTK_POOL_H

#include <stdint.h>

typedef void (*qtk_task_fn)(void *ctx, int64_t task);

/* Threads a call may use: `threads` when positive, otherwise the cores this process may run on. */
int qtk_pool_threads(int threads);

/* Runs fn(ctx, 0..ntasks-1) and returns when all are done. Calls from several threads at once are
 * served one after another; a pool thread that cannot be started leaves its share to the others. */
void qtk_pool_run(int threads, int64_t ntasks, qtk_task_fn fn, void *ctx);

#endif
