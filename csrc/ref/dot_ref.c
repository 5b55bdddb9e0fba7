/* Portable reference dot kernels (the specification of every SIMD dot kernel), the companion
 * activation format each one takes (qtk_vec_dot_type) and the reference kernel table.
 *
 * Each kernel works block by block: an exact integer sum of weight level times activation level
 * per sub-block, then the block's float scales, accumulated over blocks in float. Float formats
 * accumulate in double.
 */
#include "ref/common.h"
#include "ref/kernels.h"

static inline uint32_t read_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---------------------------------------------------------------- activation float tails */

void qtk_extend_q8_0(void *vy, int64_t nb) {
    const block_q8_0 *b = vy;
    uint8_t *tail = (uint8_t *)(b + nb);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = qtk_fp16_to_fp32(b[i].d);
        int sum = 0;
        for (int j = 0; j < QK8_0; ++j) {
            sum += b[i].qs[j];
        }
        const float fs = (float)sum;
        memcpy(tail + 4 * i, &d, 4);
        memcpy(tail + 4 * (nb + i), &fs, 4);
    }
}

void qtk_extend_q8_1(void *vy, int64_t nb) {
    const block_q8_1 *b = vy;
    uint8_t *tail = (uint8_t *)(b + nb);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = qtk_fp16_to_fp32(b[i].d), s = qtk_fp16_to_fp32(b[i].s);
        memcpy(tail + 4 * i, &d, 4);
        memcpy(tail + 4 * (nb + i), &s, 4);
    }
}

void qtk_quantize_act_q8_0_ref(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_0(x, y, n, NULL);
    qtk_extend_q8_0(y, n / QK8_0);
}

void qtk_quantize_act_q8_1_ref(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_1(x, y, n, NULL);
    qtk_extend_q8_1(y, n / QK8_1);
}

/* the float tail: d of block i, then the second field */
#define TAIL_D(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * (i))
#define TAIL_S(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * ((nb) + (i)))

/* ---------------------------------------------------------------- float rows */

static void vec_dot_f32_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += (double)x[i] * (double)y[i];
    }
    *s = (float)sum;
}

static void vec_dot_f16_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const qtk_half *x = vx;
    const float *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += (double)qtk_fp16_to_fp32(x[i]) * (double)y[i];
    }
    *s = (float)sum;
}

static void vec_dot_bf16_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += (double)qtk_bf16_to_fp32(x[i]) * (double)qtk_bf16_to_fp32(y[i]);
    }
    *s = (float)sum;
}

/* BF16 weights with F32 activations (QTK_ACT_F32): each weight widened exactly, as for F16 x F32 */
static void vec_dot_bf16_f32_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += (double)qtk_bf16_to_fp32(x[i]) * (double)y[i];
    }
    *s = (float)sum;
}

/* ---------------------------------------------------------------- 32-element formats */

static void vec_dot_q4_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum;
    }
    *s = sum;
}

static void vec_dot_q4_1_q8_1_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK4_1;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            isum += (x[i].qs[j] & 0xF) * y[i].qs[j];
            isum += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum +
               qtk_fp16_to_fp32(x[i].m) * TAIL_S(y, nb, i);
    }
    *s = sum;
}

static void vec_dot_q5_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK5_0;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = read_u32le(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += (lo - 16) * y[i].qs[j] + (hi - 16) * y[i].qs[j + 16];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum;
    }
    *s = sum;
}

static void vec_dot_q5_1_q8_1_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK5_1;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = read_u32le(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            const int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += lo * y[i].qs[j] + hi * y[i].qs[j + 16];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum +
               qtk_fp16_to_fp32(x[i].m) * TAIL_S(y, nb, i);
    }
    *s = sum;
}

static void vec_dot_q8_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int j = 0; j < QK8_0; ++j) {
            isum += x[i].qs[j] * y[i].qs[j];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum;
    }
    *s = sum;
}

static void vec_dot_iq4_nl_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_NL;
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            isum += qtk_kvalues_iq4nl[x[i].qs[j] & 0xF] * y[i].qs[j];
            isum += qtk_kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + 16];
        }
        sum += (qtk_fp16_to_fp32(x[i].d) * TAIL_D(y, nb, i)) * (float)isum;
    }
    *s = sum;
}

/* ---------------------------------------------------------------- K-quants (Q8_K activations) */

static void vec_dot_q2_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int sc_sum = 0, min_sum = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            /* elements 16j .. 16j+15: e = 128h + 32k + l with l = 16(j%2) + 0..15 */
            const int h = j / 8, k = (j % 8) / 2, l0 = 16 * (j % 2);
            int isum = 0;
            for (int l = l0; l < l0 + 16; ++l) {
                isum += ((x[i].qs[32 * h + l] >> (2 * k)) & 3) * y[i].qs[16 * j + l - l0];
            }
            sc_sum += (x[i].scales[j] & 0xF) * isum;
            min_sum += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)sc_sum -
               (y[i].d * qtk_fp16_to_fp32(x[i].dmin)) * (float)min_sum;
    }
    *s = sum;
}

static inline int q3_K_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

static void vec_dot_q3_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int total = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            int isum = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                const int lo = (x[i].qs[32 * h + l] >> (2 * k)) & 3;
                const int hbit = (x[i].hmask[l] >> (e / 32)) & 1;
                isum += (lo - (hbit ? 0 : 4)) * y[i].qs[e];
            }
            total += (q3_K_scale(x[i].scales, j) - 32) * isum;
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)total;
    }
    *s = sum;
}

static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K: eight sub-blocks of 32 with 6-bit scales and mins; qh NULL for Q4_K. */
static float dot_q45_K_block(float d, float dmin, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                             const block_q8_K *y) {
    int sc_sum = 0, min_sum = 0;
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        const int c = j / 2, shift = 4 * (j % 2);
        int isum = 0;
        for (int l = 0; l < 32; ++l) {
            int q = (qs[32 * c + l] >> shift) & 0xF;
            if (qh) {
                q |= ((qh[l] >> j) & 1) << 4;
            }
            isum += q * y->qs[32 * j + l];
        }
        sc_sum += sc * isum;
        min_sum += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return (y->d * d) * (float)sc_sum - (y->d * dmin) * (float)min_sum;
}

static void vec_dot_q4_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        sum += dot_q45_K_block(qtk_fp16_to_fp32(x[i].d), qtk_fp16_to_fp32(x[i].dmin), x[i].scales, x[i].qs, NULL,
                               &y[i]);
    }
    *s = sum;
}

static void vec_dot_q5_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        sum += dot_q45_K_block(qtk_fp16_to_fp32(x[i].d), qtk_fp16_to_fp32(x[i].dmin), x[i].scales, x[i].qs,
                               x[i].qh, &y[i]);
    }
    *s = sum;
}

static void vec_dot_q6_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int total = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            int isum = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                const uint8_t qlb = x[i].ql[64 * h + 32 * (k & 1) + l];
                const int lo = k < 2 ? (qlb & 0xF) : (qlb >> 4);
                const int hi = (x[i].qh[32 * h + l] >> (2 * k)) & 3;
                isum += ((lo | (hi << 4)) - 32) * y[i].qs[e];
            }
            total += x[i].scales[j] * isum;
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)total;
    }
    *s = sum;
}

static void vec_dot_iq4_xs_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int total = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const uint8_t *qs = x[i].qs + 16 * ib;
            const int8_t *q8 = y[i].qs + 32 * ib;
            int isum = 0;
            for (int j = 0; j < 16; ++j) {
                isum += qtk_kvalues_iq4nl[qs[j] & 0xF] * q8[j] + qtk_kvalues_iq4nl[qs[j] >> 4] * q8[j + 16];
            }
            total += (ls - 32) * isum;
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)total;
    }
    *s = sum;
}

static inline int trit(uint8_t b, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[k]);
    return ((uint16_t)q * 3) >> 8;
}

static void vec_dot_tq1_0_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int isum = 0;
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) {
                isum += (trit(x[i].qs[m], k) - 1) * q8[32 * k + m];
            }
        }
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 16; ++m) {
                isum += (trit(x[i].qs[32 + m], k) - 1) * q8[160 + 16 * k + m];
            }
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) {
                isum += (trit(x[i].qh[j], k) - 1) * q8[240 + 4 * k + j];
            }
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)isum;
    }
    *s = sum;
}

static void vec_dot_tq2_0_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int isum = 0;
        for (int e = 0; e < QK_K; ++e) {
            const int c = e / 128, k = (e % 128) / 32, m = e % 32;
            isum += (((x[i].qs[32 * c + m] >> (2 * k)) & 3) - 1) * y[i].qs[e];
        }
        sum += (y[i].d * qtk_fp16_to_fp32(x[i].d)) * (float)isum;
    }
    *s = sum;
}

/* ---------------------------------------------------------------- CustomQuant with Q8G */

void qtk_quantize_row_q8g_ref(const float *x, void *vy, int64_t n, int group) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / group; ++b, x += group, y += QTK_Q8G_BYTES(group)) {
        float amax = 0.0f;
        for (int j = 0; j < group; ++j) {
            amax = QTK_MAX(amax, fabsf(x[j]));
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        int8_t *qs = (int8_t *)(y + 8);
        int32_t sum = 0;
        for (int j = 0; j < group; ++j) {
            qs[j] = (int8_t)qtk_trunc_f2i(roundf(x[j] * id));
            sum += qs[j];
        }
        memcpy(y, &d, 4);
        memcpy(y + 4, &sum, 4);
    }
}

/* Levels of one weight group, LSB-first bit stream (as custom.c packs them). */
static void unpack_levels(const uint8_t *in, int n, int bits, uint8_t *L) {
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t acc = 0;
    int have = 0, pos = 0;
    for (int i = 0; i < n; ++i) {
        while (have < bits) {
            acc |= (uint32_t)in[pos++] << have;
            have += 8;
        }
        L[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        have -= bits;
    }
}

void qtk_vec_dot_custom_q8g_ref(const qtk_custom_params *p, int64_t n, float *s, const void *vx, const void *vy) {
    const uint8_t *x = vx, *y = vy;
    const int g = p->group, off = p->symmetric ? 2 : 4;
    uint8_t L[1024];
    float sum = 0.0f;
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += QTK_Q8G_BYTES(g)) {
        unpack_levels(x + off, g, p->bits, L);
        const int8_t *qs = (const int8_t *)(y + 8);
        int32_t isum = 0, ysum;
        float yd;
        for (int j = 0; j < g; ++j) {
            isum += L[j] * qs[j];
        }
        memcpy(&yd, y, 4);
        memcpy(&ysum, y + 4, 4);
        qtk_half dh;
        memcpy(&dh, x, 2);
        const float d = qtk_fp16_to_fp32(dh);
        if (p->symmetric) {
            sum += (d * yd) * (float)(isum - (1 << (p->bits - 1)) * ysum);
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            sum += (d * yd) * (float)isum + (qtk_fp16_to_fp32(mh) * yd) * (float)ysum;
        }
    }
    *s = sum;
}

void qtk_dequantize_custom_ref(const qtk_custom_params *p, const void *vx, float *y, int64_t n) {
    const uint8_t *x = vx;
    const int g = p->group, half = 1 << (p->bits - 1);
    uint8_t L[1024];
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += g) {
        qtk_half dh;
        memcpy(&dh, x, 2);
        const float d = qtk_fp16_to_fp32(dh);
        if (p->symmetric) {
            unpack_levels(x + 2, g, p->bits, L);
            for (int i = 0; i < g; ++i) {
                y[i] = d * (L[i] - half);
            }
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            const float m = qtk_fp16_to_fp32(mh);
            unpack_levels(x + 4, g, p->bits, L);
            for (int i = 0; i < g; ++i) {
                y[i] = d * L[i] + m;
            }
        }
    }
}

/* ---------------------------------------------------------------- the table */

/* The companion activation format of each weight type's dot kernel (kernels.h). */
int qtk_vec_dot_type(int type) {
    switch (type) {
    case QTK_TYPE_F32: return QTK_TYPE_F32;
    case QTK_TYPE_F16: return QTK_TYPE_F32;   /* ggml uses F16; see kernels.h */
    case QTK_TYPE_BF16: return QTK_TYPE_BF16;
    case QTK_TYPE_Q4_0:
    case QTK_TYPE_Q5_0:
    case QTK_TYPE_Q8_0:
    case QTK_TYPE_IQ4_NL: return QTK_TYPE_Q8_0;
    case QTK_TYPE_Q4_1:
    case QTK_TYPE_Q5_1: return QTK_TYPE_Q8_1;
    case QTK_TYPE_Q2_K:
    case QTK_TYPE_Q3_K:
    case QTK_TYPE_Q4_K:
    case QTK_TYPE_Q5_K:
    case QTK_TYPE_Q6_K:
    case QTK_TYPE_IQ4_XS:
    case QTK_TYPE_TQ1_0:
    case QTK_TYPE_TQ2_0:
    case QTK_TYPE_IQ2_XXS:
    case QTK_TYPE_IQ2_XS:
    case QTK_TYPE_IQ2_S:
    case QTK_TYPE_IQ3_XXS:
    case QTK_TYPE_IQ3_S:
    case QTK_TYPE_IQ1_S:
    case QTK_TYPE_IQ1_M: return QTK_TYPE_Q8_K;
    default: return -1;
    }
}

const qtk_kernels qtk_kernels_ref = {
    .name = "ref",
    .dequantize = {
        [QTK_TYPE_F32] = qtk_dequantize_row_f32,
        [QTK_TYPE_F16] = qtk_dequantize_row_f16,
        [QTK_TYPE_BF16] = qtk_dequantize_row_bf16,
        [QTK_TYPE_Q4_0] = qtk_dequantize_row_q4_0,
        [QTK_TYPE_Q4_1] = qtk_dequantize_row_q4_1,
        [QTK_TYPE_Q5_0] = qtk_dequantize_row_q5_0,
        [QTK_TYPE_Q5_1] = qtk_dequantize_row_q5_1,
        [QTK_TYPE_Q8_0] = qtk_dequantize_row_q8_0,
        [QTK_TYPE_Q8_1] = qtk_dequantize_row_q8_1,
        [QTK_TYPE_Q2_K] = qtk_dequantize_row_q2_K,
        [QTK_TYPE_Q3_K] = qtk_dequantize_row_q3_K,
        [QTK_TYPE_Q4_K] = qtk_dequantize_row_q4_K,
        [QTK_TYPE_Q5_K] = qtk_dequantize_row_q5_K,
        [QTK_TYPE_Q6_K] = qtk_dequantize_row_q6_K,
        [QTK_TYPE_Q8_K] = qtk_dequantize_row_q8_K,
        [QTK_TYPE_IQ4_NL] = qtk_dequantize_row_iq4_nl,
        [QTK_TYPE_IQ4_XS] = qtk_dequantize_row_iq4_xs,
        [QTK_TYPE_TQ1_0] = qtk_dequantize_row_tq1_0,
        [QTK_TYPE_TQ2_0] = qtk_dequantize_row_tq2_0,
        [QTK_TYPE_IQ2_XXS] = qtk_dequantize_row_iq2_xxs,
        [QTK_TYPE_IQ2_XS] = qtk_dequantize_row_iq2_xs,
        [QTK_TYPE_IQ2_S] = qtk_dequantize_row_iq2_s,
        [QTK_TYPE_IQ3_XXS] = qtk_dequantize_row_iq3_xxs,
        [QTK_TYPE_IQ3_S] = qtk_dequantize_row_iq3_s,
        [QTK_TYPE_IQ1_S] = qtk_dequantize_row_iq1_s,
        [QTK_TYPE_IQ1_M] = qtk_dequantize_row_iq1_m,
    },
    .vec_dot = {
        [QTK_TYPE_F32] = vec_dot_f32_ref,
        [QTK_TYPE_F16] = vec_dot_f16_ref,
        [QTK_TYPE_BF16] = vec_dot_bf16_ref,
        [QTK_TYPE_Q4_0] = vec_dot_q4_0_q8_0_ref,
        [QTK_TYPE_Q4_1] = vec_dot_q4_1_q8_1_ref,
        [QTK_TYPE_Q5_0] = vec_dot_q5_0_q8_0_ref,
        [QTK_TYPE_Q5_1] = vec_dot_q5_1_q8_1_ref,
        [QTK_TYPE_Q8_0] = vec_dot_q8_0_q8_0_ref,
        [QTK_TYPE_Q2_K] = vec_dot_q2_K_q8_K_ref,
        [QTK_TYPE_Q3_K] = vec_dot_q3_K_q8_K_ref,
        [QTK_TYPE_Q4_K] = vec_dot_q4_K_q8_K_ref,
        [QTK_TYPE_Q5_K] = vec_dot_q5_K_q8_K_ref,
        [QTK_TYPE_Q6_K] = vec_dot_q6_K_q8_K_ref,
        [QTK_TYPE_IQ4_NL] = vec_dot_iq4_nl_q8_0_ref,
        [QTK_TYPE_IQ4_XS] = vec_dot_iq4_xs_q8_K_ref,
        [QTK_TYPE_TQ1_0] = vec_dot_tq1_0_q8_K_ref,
        [QTK_TYPE_TQ2_0] = vec_dot_tq2_0_q8_K_ref,
        [QTK_TYPE_IQ2_XXS] = qtk_vec_dot_iq2_xxs_q8_K_ref,
        [QTK_TYPE_IQ2_XS] = qtk_vec_dot_iq2_xs_q8_K_ref,
        [QTK_TYPE_IQ2_S] = qtk_vec_dot_iq2_s_q8_K_ref,
        [QTK_TYPE_IQ3_XXS] = qtk_vec_dot_iq3_xxs_q8_K_ref,
        [QTK_TYPE_IQ3_S] = qtk_vec_dot_iq3_s_q8_K_ref,
        [QTK_TYPE_IQ1_S] = qtk_vec_dot_iq1_s_q8_K_ref,
        [QTK_TYPE_IQ1_M] = qtk_vec_dot_iq1_m_q8_K_ref,
    },
    .vec_dot_bf16_f32 = vec_dot_bf16_f32_ref,
    .quantize_q8_0 = qtk_quantize_row_q8_0,
    .quantize_q8_1 = qtk_quantize_row_q8_1,
    .quantize_q8_K = qtk_quantize_row_q8_K,
    .quantize_f16 = qtk_quantize_row_f16,
    .quantize_bf16 = qtk_quantize_row_bf16,
    .quantize_q8g = qtk_quantize_row_q8g_ref,
    .quantize_act_q8_0 = qtk_quantize_act_q8_0_ref,
    .quantize_act_q8_1 = qtk_quantize_act_q8_1_ref,
    .has_nonfinite = qtk_has_nonfinite,
    .vec_dot_custom = qtk_vec_dot_custom_q8g_ref,
    .dequantize_custom = qtk_dequantize_custom_ref,
};
