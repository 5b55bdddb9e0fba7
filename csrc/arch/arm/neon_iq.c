/* arm64 NEON dot kernels of the codebook formats IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and
 * IQ1_M with a Q8_K activation row (base armv8-a, no dotprod extension). Compiled only on aarch64.
 *
 * Per group of 8 (IQ3: 4) elements the grid entry is loaded as 8 bytes, the signs are applied to
 * the grid values ((g ^ m) - m with m = 0xFF where the sign bit is set), and the exact integer sums
 * are weighted by the odd sub-block scales as in dot_iq_ref.c. IQ1 folds the grid value g and the
 * +-1/8 shift into the integer 8g +- 1, as the AVX2 kernels do. The dequantizers of these types are
 * the reference ones (the table leaves them NULL).
 */
#if defined(__aarch64__)

#include "arch/arm/simd_neon.h"
#include "ref/iq_grids.h"

static inline int8x16_t grid2(uint64_t a, uint64_t b) {
    return vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(a), vcreate_u64(b)));
}

/* g with byte j negated where bit j of s0 (bytes 0..7) or s1 (bytes 8..15) is set */
static inline int8x16_t signed2(int8x16_t g, uint8_t s0, uint8_t s1) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const int8x16_t m = vreinterpretq_s8_u8(vtstq_u8(vcombine_u8(vdup_n_u8(s0), vdup_n_u8(s1)), vld1q_u8(bit)));
    return vsubq_s8(veorq_s8(g, m), m);
}

static inline uint64_t pair4(const uint32_t *grid, int a, int b) {
    return (uint64_t)grid[a] | ((uint64_t)grid[b] << 32);
}

static inline int dot32(int8x16_t a, int8x16_t b, const int8_t *q8) {
    return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), a, vld1q_s8(q8)), b, vld1q_s8(q8 + 16)));
}

static inline uint8_t ks(uint32_t v) {
    return qtk_ksigns_iq2xs[v & 127];
}

void qtk_vec_dot_iq2_xxs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint32_t idx = x[i].qs[4 * ib] | ((uint32_t)x[i].qs[4 * ib + 1] << 16);
            const uint32_t aux = x[i].qs[4 * ib + 2] | ((uint32_t)x[i].qs[4 * ib + 3] << 16);
            const int8x16_t a = signed2(grid2(qtk_iq2xxs_grid[idx & 255], qtk_iq2xxs_grid[(idx >> 8) & 255]), ks(aux),
                                        ks(aux >> 7));
            const int8x16_t b = signed2(grid2(qtk_iq2xxs_grid[(idx >> 16) & 255], qtk_iq2xxs_grid[idx >> 24]),
                                        ks(aux >> 14), ks(aux >> 21));
            bsum += dot32(a, b, q8) * (int32_t)(2 * (aux >> 28) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq2_xs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint16_t *q = x[i].qs + 4 * ib;
            const int8x16_t a = signed2(grid2(qtk_iq2xs_grid[q[0] & 511], qtk_iq2xs_grid[q[1] & 511]), ks(q[0] >> 9),
                                        ks(q[1] >> 9));
            const int8x16_t b = signed2(grid2(qtk_iq2xs_grid[q[2] & 511], qtk_iq2xs_grid[q[3] & 511]), ks(q[2] >> 9),
                                        ks(q[3] >> 9));
            bsum += dot16i(a, vld1q_s8(q8)) * (2 * (x[i].scales[ib] & 0xF) + 1) +
                    dot16i(b, vld1q_s8(q8 + 16)) * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq2_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib];
            const int8x16_t a = signed2(grid2(qtk_iq2s_grid[qs[0] | ((qh << 8) & 0x300)],
                                              qtk_iq2s_grid[qs[1] | ((qh << 6) & 0x300)]),
                                        signs[4 * ib], signs[4 * ib + 1]);
            const int8x16_t b = signed2(grid2(qtk_iq2s_grid[qs[2] | ((qh << 4) & 0x300)],
                                              qtk_iq2s_grid[qs[3] | ((qh << 2) & 0x300)]),
                                        signs[4 * ib + 2], signs[4 * ib + 3]);
            bsum += dot16i(a, vld1q_s8(q8)) * (2 * (x[i].scales[ib] & 0xF) + 1) +
                    dot16i(b, vld1q_s8(q8 + 16)) * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq3_xxs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint8_t *qs = x[i].qs + 8 * ib;
            const uint32_t aux = rd32(x[i].qs + QK_K / 4 + 4 * ib);
            const int8x16_t a = signed2(grid2(pair4(qtk_iq3xxs_grid, qs[0], qs[1]), pair4(qtk_iq3xxs_grid, qs[2], qs[3])),
                                        ks(aux), ks(aux >> 7));
            const int8x16_t b = signed2(grid2(pair4(qtk_iq3xxs_grid, qs[4], qs[5]), pair4(qtk_iq3xxs_grid, qs[6], qs[7])),
                                        ks(aux >> 14), ks(aux >> 21));
            bsum += dot32(a, b, q8) * (int32_t)(2 * (aux >> 28) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.25f * sumf;
}

void qtk_vec_dot_iq3_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint8_t *qs = x[i].qs + 8 * ib;
            const int qh = x[i].qh[ib];
            int k[8];
            for (int j = 0; j < 8; ++j) {
                k[j] = qs[j] | (((qh >> j) & 1) << 8);
            }
            const uint8_t *sg = x[i].signs + 4 * ib;
            const int8x16_t a =
                signed2(grid2(pair4(qtk_iq3s_grid, k[0], k[1]), pair4(qtk_iq3s_grid, k[2], k[3])), sg[0], sg[1]);
            const int8x16_t b =
                signed2(grid2(pair4(qtk_iq3s_grid, k[4], k[5]), pair4(qtk_iq3s_grid, k[6], k[7])), sg[2], sg[3]);
            bsum += dot32(a, b, q8) * (2 * ((x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = sumf;
}

/* IQ1: 8 g + (+-1) per element, from the signed grid bytes of two groups and their delta signs */
static inline int8x16_t iq1_values(uint64_t ga, uint64_t gb, int neg_a, int neg_b) {
    const int8x16_t s = vcombine_s8(vdup_n_s8(neg_a ? -1 : 1), vdup_n_s8(neg_b ? -1 : 1));
    return vaddq_s8(vshlq_n_s8(grid2(ga, gb), 3), s);
}

void qtk_vec_dot_iq1_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;   /* 8 * grid part + delta part */
        for (int ib = 0; ib < QK_K / 32; ++ib, q8 += 32) {
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int qh = x[i].qh[ib], neg = (qh & 0x8000) != 0;
            const int8x16_t a = iq1_values(qtk_iq1s_grid[qs[0] | ((qh << 8) & 0x700)],
                                           qtk_iq1s_grid[qs[1] | ((qh << 5) & 0x700)], neg, neg);
            const int8x16_t b = iq1_values(qtk_iq1s_grid[qs[2] | ((qh << 2) & 0x700)],
                                           qtk_iq1s_grid[qs[3] | ((qh >> 1) & 0x700)], neg, neg);
            bsum += dot32(a, b, q8) * (2 * ((qh >> 12) & 7) + 1);
        }
        sumf += h2f(x[i].d) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void qtk_vec_dot_iq1_m_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *sc = x[i].scales;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib, q8 += 16) {
            const uint16_t w = (uint16_t)(sc[2 * (ib / 4)] | (sc[2 * (ib / 4) + 1] << 8));
            const int h = x[i].qh[ib];
            const int8x16_t v = iq1_values(qtk_iq1s_grid[x[i].qs[2 * ib] | ((h << 8) & 0x700)],
                                           qtk_iq1s_grid[x[i].qs[2 * ib + 1] | ((h << 4) & 0x700)], h & 0x08, h & 0x80);
            bsum += dot16i(v, vld1q_s8(q8)) * (2 * ((w >> (3 * (ib % 4))) & 7) + 1);
        }
        sumf += h2f(qtk_iq1_m_scale(&x[i])) * y[i].d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

#endif
