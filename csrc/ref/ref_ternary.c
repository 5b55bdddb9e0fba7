/* Ternary formats TQ1_0 (base-3, 1.6875 bpw) and TQ2_0 (2 bits, 2.0625 bpw); portable reference.
 * Scale d = max|x| of the 256 elements; trits t = lroundf(x / d) + 1 in {0, 1, 2}. Importance
 * weights are ignored, as in ggml. */
#include "ref/common.h"
#include "ref/ref.h"

static float absmax256(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; ++j) {
        amax = QTK_MAX(amax, fabsf(x[j]));
    }
    return amax;
}

/* Byte holding trits t0 (most significant) .. t4: ceil(v * 256 / 243) of v = sum t_k 3^(4-k). */
static uint8_t pack_trits(const int *t) {
    int v = 0;
    for (int k = 0; k < 5; ++k) {
        v = v * 3 + t[k];
    }
    return (uint8_t)((v * 256 + 242) / 243);
}

void qtk_quantize_row_tq1_0(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_tq1_0 *y = vy;
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        const float d = absmax256(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        int t[5];
        /* elements 0..159: element 32k + m is trit k of qs[m] */
        for (int m = 0; m < 32; ++m) {
            for (int k = 0; k < 5; ++k) {
                t[k] = (int)qtk_lroundf(x[m + 32 * k] * id) + 1;
            }
            y[i].qs[m] = pack_trits(t);
        }
        /* elements 160..239: element 160 + 16k + m is trit k of qs[32 + m] */
        for (int m = 0; m < 16; ++m) {
            for (int k = 0; k < 5; ++k) {
                t[k] = (int)qtk_lroundf(x[160 + m + 16 * k] * id) + 1;
            }
            y[i].qs[32 + m] = pack_trits(t);
        }
        /* elements 240..255: element 240 + 4k + j is trit k of qh[j]; the fifth trit is 0 */
        for (int j = 0; j < 4; ++j) {
            for (int k = 0; k < 4; ++k) {
                t[k] = (int)qtk_lroundf(x[240 + j + 4 * k] * id) + 1;
            }
            t[4] = 0;
            y[i].qh[j] = pack_trits(t);
        }
    }
}

/* Trit k of a packed byte: the top of (b * 3^k mod 256) * 3 / 256. */
static inline int unpack_trit(uint8_t b, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[k]);
    return ((uint16_t)q * 3) >> 8;
}

void qtk_dequantize_row_tq1_0(const void *vx, float *y, int64_t n) {
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        float *out = y + i * QK_K;
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) {
                out[32 * k + m] = (float)(unpack_trit(x[i].qs[m], k) - 1) * d;
            }
        }
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 16; ++m) {
                out[160 + 16 * k + m] = (float)(unpack_trit(x[i].qs[32 + m], k) - 1) * d;
            }
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) {
                out[240 + 4 * k + j] = (float)(unpack_trit(x[i].qh[j], k) - 1) * d;
            }
        }
    }
}

void qtk_quantize_row_tq2_0(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_tq2_0 *y = vy;
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        const float d = absmax256(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qtk_fp32_to_fp16(d);
        /* element 128c + 32k + m is bits 2k of qs[32c + m] */
        for (int c = 0; c < 2; ++c) {
            for (int m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (int k = 0; k < 4; ++k) {
                    const int t = (int)qtk_lroundf(x[128 * c + 32 * k + m] * id) + 1;
                    q = (uint8_t)(q + ((t & 3) << (2 * k)));
                }
                y[i].qs[32 * c + m] = q;
            }
        }
    }
}

void qtk_dequantize_row_tq2_0(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; ++e) {
            const int c = e / 128, k = (e % 128) / 32, m = e % 32;
            const int q = (x[i].qs[32 * c + m] >> (2 * k)) & 3;
            y[i * QK_K + e] = (float)(q - 1) * d;
        }
    }
}
