/* The pthread pool behind qtk_pool_run (see pool.h).
 *
 * Workers are started on first need and live for the process. A call publishes its job, bumps a
 * generation counter and wakes every worker; each worker either takes tasks (the first
 * threads-1 workers) or just checks in, and the caller returns once every worker has checked in,
 * so no worker can still be looking at a job when the next one is published. Workers spin
 * briefly before sleeping so back-to-back calls (a decode loop) do not pay a wake-up each time.
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
    int participants;      /* workers that take tasks */
} job_t;

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;  /* one call at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_done = PTHREAD_COND_INITIALIZER;
static int nworkers;
static job_t job;
static uint64_t generation;    /* atomic */
static int64_t next_task;      /* atomic */
static int pending;            /* atomic: workers yet to check in */
static uint64_t start_gen[POOL_MAX];  /* the generation a new worker has already seen */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void run_tasks(const job_t *j) {
    for (;;) {
        const int64_t t = __atomic_fetch_add(&next_task, 1, __ATOMIC_RELAXED);
        if (t >= j->ntasks) {
            break;
        }
        j->fn(j->ctx, t);
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint64_t seen = start_gen[index];
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen && spins < SPIN_ROUNDS) {
            cpu_relax();
            ++spins;
        }
        if (g == seen) {
            pthread_mutex_lock(&mu);
            while ((g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE)) == seen) {
                pthread_cond_wait(&cv_work, &mu);
            }
            pthread_mutex_unlock(&mu);
        }
        seen = g;
        const job_t j = job;
        if (index < j.participants) {
            run_tasks(&j);
        }
        if (__atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&cv_done);
            pthread_mutex_unlock(&mu);
        }
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

void qtk_pool_run(int threads, int64_t ntasks, qtk_task_fn fn, void *ctx) {
    threads = qtk_pool_threads(threads);
    if (threads > ntasks) {
        threads = ntasks < 1 ? 1 : (int)ntasks;
    }
    if (threads <= 1) {
        for (int64_t t = 0; t < ntasks; ++t) {
            fn(ctx, t);
        }
        return;
    }
    pthread_mutex_lock(&call_lock);
    grow(threads - 1);
    if (nworkers == 0) {
        pthread_mutex_unlock(&call_lock);
        for (int64_t t = 0; t < ntasks; ++t) {
            fn(ctx, t);
        }
        return;
    }
    job.fn = fn;
    job.ctx = ctx;
    job.ntasks = ntasks;
    job.participants = threads - 1;
    __atomic_store_n(&next_task, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pending, nworkers, __ATOMIC_RELAXED);
    pthread_mutex_lock(&mu);
    __atomic_add_fetch(&generation, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&cv_work);
    pthread_mutex_unlock(&mu);

    const job_t j = job;
    run_tasks(&j);

    int spins = 0;
    while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0 && spins < SPIN_ROUNDS) {
        cpu_relax();
        ++spins;
    }
    pthread_mutex_lock(&mu);
    while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0) {
        pthread_cond_wait(&cv_done, &mu);
    }
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&call_lock);
}
