/* Run-time choice of the kernel table: cpuid + xgetbv on x86-64 (AVX2, FMA, F16C and the OS
 * saving YMM state), NEON always on arm64. Detection runs once (pthread_once); the active table
 * is an atomic pointer, so qtk_set_isa is safe while other threads run kernels: each call reads
 * the pointer once and keeps that table to its end.
 *
 * This file is the one owner of CPU detection and of the QTK_ISA variable, for the kernel table
 * and for the quantizer variants (fastq.c) alike. QTK_ISA caps the choice: it can lower it, never
 * raise it above what the CPU supports:
 *   ref                       portable reference kernels and quantizers
 *   baseline (scalar, vec)    no run-time CPU feature: reference kernels on x86 (NEON on arm64,
 *                             which every arm64 CPU has), the quantizers' lane code at the
 *                             build's baseline (SSE2 / NEON)
 *   avx2, neon                at most that instruction set
 * An unknown value is ignored (the Python layer logs a warning about it).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qtk_isa.h"
#include "ref/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QTK_X86 1
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int supported_mask;   /* bit per ISA: build + CPU */
static int cap = QTK_ISA_COUNT - 1;
static const qtk_kernels *active_table = &qtk_kernels_ref;
static int active_isa = QTK_ISA_REF;

static int quantizer_cap = QTK_QUANT_CAP_NONE;

static const char *const isa_names[QTK_ISA_COUNT] = {"ref", "avx2", "neon"};

#ifdef QTK_X86
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
    if ((xlo & 6u) != 6u) {   /* the OS saves XMM and YMM state */
        return 0;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;      /* AVX2 */
}
#endif

static const qtk_kernels *table_of(int isa) {
    switch (isa) {
#ifdef QTK_X86
    case QTK_ISA_AVX2: return &qtk_kernels_avx2;
#endif
#if defined(__aarch64__)
    case QTK_ISA_NEON: return &qtk_kernels_neon;
#endif
    default: return &qtk_kernels_ref;
    }
}

static void detect(void) {
    int mask = 1 << QTK_ISA_REF;
#ifdef QTK_X86
    if (cpu_has_avx2()) {
        mask |= 1 << QTK_ISA_AVX2;
    }
#endif
#if defined(__aarch64__)
    mask |= 1 << QTK_ISA_NEON;
#endif
    supported_mask = mask;
    const char *env = getenv("QTK_ISA");
    if (env) {
        if (strcmp(env, "baseline") == 0 || strcmp(env, "scalar") == 0 || strcmp(env, "vec") == 0) {
#if defined(__aarch64__)
            cap = QTK_ISA_NEON;
#else
            cap = QTK_ISA_REF;
#endif
            quantizer_cap = QTK_QUANT_CAP_BASELINE;
        }
        for (int i = 0; i < QTK_ISA_COUNT; ++i) {
            if (strcmp(env, isa_names[i]) == 0) {
                cap = i;
                quantizer_cap = i == QTK_ISA_REF ? QTK_QUANT_CAP_REF : QTK_QUANT_CAP_NONE;
            }
        }
    }
    int best = QTK_ISA_REF;
    for (int i = 0; i < QTK_ISA_COUNT; ++i) {
        if ((mask >> i) & 1 && i <= cap) {
            best = i;
        }
    }
    __atomic_store_n(&active_isa, best, __ATOMIC_RELEASE);
    __atomic_store_n(&active_table, table_of(best), __ATOMIC_RELEASE);
}

static void ensure_init(void) {
    pthread_once(&init_once, detect);
}

const char *qtk_isa_name(int isa) {
    return isa >= 0 && isa < QTK_ISA_COUNT ? isa_names[isa] : NULL;
}

int qtk_isa_supported(int isa) {
    ensure_init();
    return isa >= 0 && isa < QTK_ISA_COUNT && ((supported_mask >> isa) & 1);
}

int qtk_isa_available(int isa) {
    return qtk_isa_supported(isa) && isa <= cap;
}

int qtk_active_isa(void) {
    ensure_init();
    return __atomic_load_n(&active_isa, __ATOMIC_ACQUIRE);
}

int qtk_set_isa(int isa) {
    ensure_init();
    if (isa < 0 || isa >= QTK_ISA_COUNT) {
        return QTK_E_ARG;
    }
    if (!qtk_isa_available(isa)) {
        return QTK_E_UNSUPPORTED;
    }
    __atomic_store_n(&active_table, table_of(isa), __ATOMIC_RELEASE);
    __atomic_store_n(&active_isa, isa, __ATOMIC_RELEASE);
    qtk_fastq_follow_isa(isa);   /* the quantizers follow: ref -> ref, avx2 -> avx2, neon -> lane code */
    return QTK_OK;
}

int qtk_isa_quantizer_cap(void) {
    ensure_init();
    return quantizer_cap;
}

const qtk_kernels *qtk_kernels_active(void) {
    ensure_init();
    return __atomic_load_n(&active_table, __ATOMIC_ACQUIRE);
}
