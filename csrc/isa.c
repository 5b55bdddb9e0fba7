/* The one run-time choice of the C core: which instruction set runs the matmul kernels, which
 * quantizer variant runs qtk_quantize, and which lanes run the IQ quantizers' searches.
 *
 * CPU detection is cpuid + xgetbv on x86-64 (AVX2, FMA, F16C and the OS saving YMM state); NEON is
 * always there on arm64. It runs once (pthread_once), together with the one reading of the QTK_ISA
 * variable, which caps the choice: it can lower it, never raise it above what the CPU supports:
 *   ref                       portable reference kernels and quantizers
 *   baseline (scalar, vec)    no run-time CPU feature: reference kernels on x86 (NEON on arm64,
 *                             which every arm64 CPU has), the quantizers' lane code at the
 *                             build's baseline (SSE2 / NEON)
 *   avx2, neon                at most that instruction set
 * An unknown value is ignored (the Python layer logs a warning about it).
 *
 * The active kernel table, ISA and quantizer variant are atomic, so qtk_set_isa and
 * qtk_fastq_set_variant are safe while other threads run: each call reads what it needs once and
 * keeps it to its end. qtk_set_isa moves the quantizer variant along (ref -> ref, avx2 -> avx2,
 * neon -> the lane code); the IQ searches follow the variant (AVX2 lanes with "avx2", the portable
 * lanes otherwise). Every variant and every set of lanes writes the same bytes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fastq/fastq.h"
#include "isa.h"
#include "qtk_fastq.h"
#include "qtk_isa.h"
#include "ref/iq_search.h"
#include "ref/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

#include "arch/x86/simd_avx2.h"
#define QTK_X86 1
#endif
#if defined(__aarch64__)
#include "arch/arm/simd_neon.h"
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* kernels: bit per ISA that build + CPU support, the QTK_ISA cap, the active table */
static int isa_mask;
static int isa_cap = QTK_ISA_COUNT - 1;
static const qtk_kernels *active_table = &qtk_kernels_ref;
static int active_isa = QTK_ISA_REF;

/* quantizers: the same for the variants */
static int variant_mask;
static int variant_cap = QTK_FASTQ_COUNT - 1;
static int active_variant = QTK_FASTQ_REF;

static const char *const isa_names[QTK_ISA_COUNT] = {"ref", "avx2", "neon"};
static const char *const variant_names[QTK_FASTQ_COUNT] = {"ref", "vec", "avx2"};

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

/* The variant and the IQ searches' lanes change together. */
static void use_variant(int variant) {
    __atomic_store_n(&active_variant, variant, __ATOMIC_RELEASE);
#ifdef QTK_FASTQ_HAVE_AVX2
    qtk_iq_set_ops(variant == QTK_FASTQ_AVX2 ? &qtk_iq_ops_avx2 : NULL);
#else
    qtk_iq_set_ops(NULL);
#endif
}

/* The highest id whose bit is in mask and that is not above cap (0 when none is). */
static int best_of(int mask, int count, int cap) {
    int best = 0;
    for (int i = 0; i < count; ++i) {
        if (((mask >> i) & 1) && i <= cap) {
            best = i;
        }
    }
    return best;
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
    isa_mask = mask;
    int vmask = (1 << QTK_FASTQ_REF) | (1 << QTK_FASTQ_VEC);
#ifdef QTK_FASTQ_HAVE_AVX2
    if ((mask >> QTK_ISA_AVX2) & 1) {
        vmask |= 1 << QTK_FASTQ_AVX2;
    }
#endif
    variant_mask = vmask;
    const char *env = getenv("QTK_ISA");
    if (env) {
        if (strcmp(env, "baseline") == 0 || strcmp(env, "scalar") == 0 || strcmp(env, "vec") == 0) {
#if defined(__aarch64__)
            isa_cap = QTK_ISA_NEON;
#else
            isa_cap = QTK_ISA_REF;
#endif
            variant_cap = QTK_FASTQ_VEC;
        }
        for (int i = 0; i < QTK_ISA_COUNT; ++i) {
            if (strcmp(env, isa_names[i]) == 0) {
                isa_cap = i;
                variant_cap = i == QTK_ISA_REF ? QTK_FASTQ_REF : QTK_FASTQ_COUNT - 1;
            }
        }
    }
    const int best = best_of(isa_mask, QTK_ISA_COUNT, isa_cap);
    __atomic_store_n(&active_isa, best, __ATOMIC_RELEASE);
    __atomic_store_n(&active_table, table_of(best), __ATOMIC_RELEASE);
    use_variant(best_of(variant_mask, QTK_FASTQ_COUNT, variant_cap));
}

static void ensure_init(void) {
    pthread_once(&init_once, detect);
}

/* ---------------------------------------------------------------- instruction sets (qtk_isa.h) */

const char *qtk_isa_name(int isa) {
    return isa >= 0 && isa < QTK_ISA_COUNT ? isa_names[isa] : NULL;
}

int qtk_isa_supported(int isa) {
    ensure_init();
    return isa >= 0 && isa < QTK_ISA_COUNT && ((isa_mask >> isa) & 1);
}

int qtk_isa_available(int isa) {
    return qtk_isa_supported(isa) && isa <= isa_cap;
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
    /* the quantizers follow: ref -> ref, avx2 -> avx2, neon -> lane code (or the best below it) */
    int want = isa == QTK_ISA_REF ? QTK_FASTQ_REF : isa == QTK_ISA_AVX2 ? QTK_FASTQ_AVX2 : QTK_FASTQ_VEC;
    while (want > QTK_FASTQ_REF && !qtk_fastq_available(want)) {
        --want;
    }
    use_variant(want);
    return QTK_OK;
}

const qtk_kernels *qtk_kernels_active(void) {
    ensure_init();
    return __atomic_load_n(&active_table, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------------- quantizer variants (qtk_fastq.h) */

const char *qtk_fastq_name(int variant) {
    return variant >= 0 && variant < QTK_FASTQ_COUNT ? variant_names[variant] : NULL;
}

int qtk_fastq_supported(int variant) {
    ensure_init();
    return variant >= 0 && variant < QTK_FASTQ_COUNT && ((variant_mask >> variant) & 1);
}

int qtk_fastq_available(int variant) {
    return qtk_fastq_supported(variant) && variant <= variant_cap;
}

int qtk_fastq_variant(void) {
    ensure_init();
    return __atomic_load_n(&active_variant, __ATOMIC_ACQUIRE);
}

int qtk_fastq_set_variant(int variant) {
    ensure_init();
    if (variant < 0 || variant >= QTK_FASTQ_COUNT) {
        return QTK_E_ARG;
    }
    if (!qtk_fastq_available(variant)) {
        return QTK_E_UNSUPPORTED;
    }
    use_variant(variant);
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
