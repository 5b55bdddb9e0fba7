/* Choice of the quantizer variant: cpuid + xgetbv once (pthread_once), the QTK_ISA cap, and an
 * atomic current choice so that qtk_fastq_set_variant is safe while other threads quantize (each
 * qtk_quantize call reads the choice once and keeps it to its end). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fastq.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int supported_mask;
static int cap = QTK_FASTQ_COUNT - 1;
static int current = QTK_FASTQ_REF;

static const char *const names[QTK_FASTQ_COUNT] = {"ref", "vec", "avx2"};

#ifdef QTK_FASTQ_HAVE_AVX2
/* AVX2 + FMA + F16C, and the OS saves YMM state. */
static int cpu_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return 0;
    }
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!(osxsave && avx && fma && f16c)) {
        return 0;
    }
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 6u) != 6u) {
        return 0;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}
#endif

static void detect(void) {
    int mask = (1 << QTK_FASTQ_REF) | (1 << QTK_FASTQ_VEC);
#ifdef QTK_FASTQ_HAVE_AVX2
    if (cpu_has_avx2()) {
        mask |= 1 << QTK_FASTQ_AVX2;
    }
#endif
    supported_mask = mask;
    const char *env = getenv("QTK_ISA");
    if (env) {
        if (strcmp(env, "ref") == 0) {
            cap = QTK_FASTQ_REF;
        } else if (strcmp(env, "scalar") == 0 || strcmp(env, "baseline") == 0 || strcmp(env, "vec") == 0) {
            cap = QTK_FASTQ_VEC;
        }
        /* "avx2", "neon" and unknown values leave the best choice */
    }
    int best = QTK_FASTQ_REF;
    for (int v = 0; v < QTK_FASTQ_COUNT; ++v) {
        if (((mask >> v) & 1) && v <= cap) {
            best = v;
        }
    }
    __atomic_store_n(&current, best, __ATOMIC_RELEASE);
}

static void ensure_init(void) {
    pthread_once(&init_once, detect);
}

const char *qtk_fastq_name(int variant) {
    return variant >= 0 && variant < QTK_FASTQ_COUNT ? names[variant] : NULL;
}

int qtk_fastq_supported(int variant) {
    ensure_init();
    return variant >= 0 && variant < QTK_FASTQ_COUNT && ((supported_mask >> variant) & 1);
}

int qtk_fastq_available(int variant) {
    return qtk_fastq_supported(variant) && variant <= cap;
}

int qtk_fastq_variant(void) {
    ensure_init();
    return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

int qtk_fastq_set_variant(int variant) {
    ensure_init();
    if (variant < 0 || variant >= QTK_FASTQ_COUNT) {
        return QTK_E_ARG;
    }
    if (!qtk_fastq_available(variant)) {
        return QTK_E_UNSUPPORTED;
    }
    __atomic_store_n(&current, variant, __ATOMIC_RELEASE);
    return QTK_OK;
}

const qtk_fastq_table *qtk_fastq_active(void) {
    switch (qtk_fastq_variant()) {
    case QTK_FASTQ_VEC: return &qtk_fastq_table_vec;
#ifdef QTK_FASTQ_HAVE_AVX2
    case QTK_FASTQ_AVX2: return &qtk_fastq_table_avx2;
#endif
    default: return NULL;
    }
}
