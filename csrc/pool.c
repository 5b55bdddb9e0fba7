/* The pthread pool behind qtk_pool_run (see pool.h).
 *
 * Workers are started on first need and live for the process. A call publishes a job descriptor
 * that lives on the caller's stack (function, context, task count, an atomic task cursor and a
 * completion count), wakes the workers and takes tasks itself. A worker that wakes while the job
 * is still published takes a reference to it (under the mutex), takes tasks, and drops the
 * reference. The caller returns once every task has completed and no worker holds a reference,
 * so a worker the scheduler never got to run (a busy machine) costs nothing: it holds no
 * reference, and when it does run it finds the job gone. Workers spin briefly before sleeping so
 * back-to-back calls (a decode loop) do not pay a wake-up each time.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "pool.h"

#define POOL_MAX 64
#define SPIN_ROUNDS 4000

typedef struct {
    qtk_task_fn fn;
    void *ctx;
    int64_t ntasks;
    int participants;      /* workers that may take tasks */
    int64_t next;          /* atomic: next task index */
    int64_t done;          /* atomic: completed tasks */
    int refs;              /* workers holding the job (mu) */
} job_t;

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;  /* one call at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
static int nworkers;
static job_t *current;           /* the published job (mu), NULL between calls */
static uint64_t generation;      /* atomic: bumped on every publication */
static uint64_t start_gen[POOL_MAX];

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Take and run tasks until none is left; wakes the caller after the last completion. */
static void run_tasks(job_t *j) {
    for (;;) {
        const int64_t t = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (t >= j->ntasks) {
            break;
        }
        j->fn(j->ctx, t);
        if (__atomic_add_fetch(&j->done, 1, __ATOMIC_ACQ_REL) == j->ntasks) {
            pthread_mutex_lock(&mu);
            pthread_cond_broadcast(&cv_done);
            pthread_mutex_unlock(&mu);
        }
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint64_t seen = start_gen[index];
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen && spins < SPIN_ROUNDS) {
            cpu_relax();
            ++spins;
        }
        pthread_mutex_lock(&mu);
        while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen) {
            pthread_cond_wait(&cv_work, &mu);
        }
        seen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
        job_t *j = current;
        if (!j || index >= j->participants) {
            pthread_mutex_unlock(&mu);
            continue;
        }
        ++j->refs;
        pthread_mutex_unlock(&mu);

        run_tasks(j);

        pthread_mutex_lock(&mu);
        if (--j->refs == 0) {
            pthread_cond_broadcast(&cv_done);
        }
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

int qtk_pool_threads(int threads) {
    if (threads > 0) {
        return threads > POOL_MAX ? POOL_MAX : threads;
    }
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int c = CPU_COUNT(&set);
        if (c > 0) {
            return c > POOL_MAX ? POOL_MAX : c;
        }
    }
#endif
    const long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > POOL_MAX ? POOL_MAX : (int)c;
}

/* In a child after fork() only the forking thread exists: forget the parent's workers and
 * re-initialise the locks (another thread may have held one at the fork), so the child starts a
 * pool of its own on first need instead of waiting for workers that are not there. */
static void after_fork_child(void) {
    nworkers = 0;
    current = NULL;
    pthread_mutex_init(&call_lock, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&cv_work, NULL);
    pthread_cond_init(&cv_done, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void) {
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* Start workers until there are `want` (call_lock held). */
static void grow(int want) {
    pthread_once(&atfork_once, register_atfork);
    while (nworkers < want) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* a new worker must not take the current generation for a job */
        start_gen[nworkers] = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
        const int ok = pthread_create(&tid, &attr, worker_main, (void *)(intptr_t)nworkers) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) {
            break;
        }
        ++nworkers;
    }
}

static void run_inline(int64_t ntasks, qtk_task_fn fn, void *ctx) {
    for (int64_t t = 0; t < ntasks; ++t) {
        fn(ctx, t);
    }
}

void qtk_pool_run(int threads, int64_t ntasks, qtk_task_fn fn, void *ctx) {
    threads = qtk_pool_threads(threads);
    if (threads > ntasks) {
        threads = ntasks < 1 ? 1 : (int)ntasks;
    }
    if (threads <= 1) {
        run_inline(ntasks, fn, ctx);
        return;
    }
    pthread_mutex_lock(&call_lock);
    grow(threads - 1);
    if (nworkers == 0) {
        pthread_mutex_unlock(&call_lock);
        run_inline(ntasks, fn, ctx);
        return;
    }
    job_t job = {fn, ctx, ntasks, threads - 1, 0, 0, 0};
    pthread_mutex_lock(&mu);
    current = &job;
    __atomic_add_fetch(&generation, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&cv_work);
    pthread_mutex_unlock(&mu);

    run_tasks(&job);

    /* every task completed ... */
    int spins = 0;
    while (__atomic_load_n(&job.done, __ATOMIC_ACQUIRE) != ntasks && spins < SPIN_ROUNDS) {
        cpu_relax();
        ++spins;
    }
    pthread_mutex_lock(&mu);
    while (__atomic_load_n(&job.done, __ATOMIC_ACQUIRE) != ntasks) {
        pthread_cond_wait(&cv_done, &mu);
    }
    /* ... and no worker still holds the job (only those that took it can) */
    current = NULL;
    while (job.refs > 0) {
        pthread_cond_wait(&cv_done, &mu);
    }
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&call_lock);
}
