/* Choice of the quantizer variant, once (pthread_once) from dispatch.c's CPU detection and QTK_ISA
 * cap, and an atomic current choice so that qtk_fastq_set_variant / qtk_set_isa are safe while
 * other threads quantize (each qtk_quantize call reads the choice once and keeps it to its end). */
#include <pthread.h>

#include "fastq/fastq.h"
#include "qtk_isa.h"
#include "ref/iq_search.h"
#include "ref/kernels.h"

#ifdef QTK_FASTQ_HAVE_AVX2
#include "arch/x86/simd_avx2.h"
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int supported_mask;
static int cap = QTK_FASTQ_COUNT - 1;
static int current = QTK_FASTQ_REF;

static const char *const names[QTK_FASTQ_COUNT] = {"ref", "vec", "avx2"};

/* The IQ quantizers' searches follow the variant: the AVX2 lanes with "avx2", the portable ones
 * otherwise (the same bytes either way). */
static void set_current(int variant) {
    __atomic_store_n(&current, variant, __ATOMIC_RELEASE);
#ifdef QTK_FASTQ_HAVE_AVX2
    qtk_iq_set_ops(variant == QTK_FASTQ_AVX2 ? &qtk_iq_ops_avx2 : NULL);
#else
    qtk_iq_set_ops(NULL);
#endif
}

/* CPU detection and the QTK_ISA cap come from dispatch.c, the one owner of both. */
static void detect(void) {
    int mask = (1 << QTK_FASTQ_REF) | (1 << QTK_FASTQ_VEC);
#ifdef QTK_FASTQ_HAVE_AVX2
    if (qtk_isa_supported(QTK_ISA_AVX2)) {
        mask |= 1 << QTK_FASTQ_AVX2;
    }
#endif
    supported_mask = mask;
    switch (qtk_isa_quantizer_cap()) {
    case QTK_QUANT_CAP_REF: cap = QTK_FASTQ_REF; break;
    case QTK_QUANT_CAP_BASELINE: cap = QTK_FASTQ_VEC; break;
    default: cap = QTK_FASTQ_COUNT - 1; break;
    }
    int best = QTK_FASTQ_REF;
    for (int v = 0; v < QTK_FASTQ_COUNT; ++v) {
        if (((mask >> v) & 1) && v <= cap) {
            best = v;
        }
    }
    set_current(best);
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
    set_current(variant);
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

void qtk_fastq_follow_isa(int isa) {
    ensure_init();
    int want = isa == QTK_ISA_REF ? QTK_FASTQ_REF : isa == QTK_ISA_AVX2 ? QTK_FASTQ_AVX2 : QTK_FASTQ_VEC;
    while (want > QTK_FASTQ_REF && !qtk_fastq_available(want)) {
        --want;
    }
    set_current(want);
}
