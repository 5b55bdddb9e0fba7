/* AVX2 dequantizers of every type and of CustomQuant. Each gives exactly the bits of its
 * reference in ref_*.c / dot_ref.c: the same float operations in the same order per element (a
 * multiply then an add or subtract, never fused; the scale products formed in the same order).
 * qtk_dequantize and qtk_custom_dequantize reach them through the kernel table.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

/* ---------------------------------------------------------------- helpers */

/* 8 int8 -> 8 floats */
static inline __m256 i8x8_ps(const void *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline __m256 u8x8_ps(const void *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* 32 int8 levels (in a vector) times d -> 32 floats at y */
static inline void store_scaled32(__m256i q, __m256 d, float *y) {
    int8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(i8x8_ps(tmp + 8 * k), d));
    }
}

/* y = d * q - m (the K-quant form), 16 unsigned levels */
static inline void store_dq_minus_m16(const uint8_t *q, float d, float m, float *y) {
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_ps(q)), vm));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_ps(q + 8)), vm));
}

/* ---------------------------------------------------------------- dequantizers */

void qtk_dequantize_row_f16_avx2(const void *vx, float *y, int64_t n) {
    const qtk_half *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    }
    for (; i < n; ++i) {
        y[i] = qtk_h2f(x[i]);
    }
}

void qtk_dequantize_row_bf16_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; ++i) {
        y[i] = qtk_bf16_to_fp32(x[i]);
    }
}

void qtk_dequantize_row_q4_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const __m256i q = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
        store_scaled32(q, _mm256_set1_ps(qtk_h2f(x[i].d)), y + i * QK4_0);
    }
}

static inline void store_affine32(__m256i q, float d, float m, float *y) {
    uint8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(u8x8_ps(tmp + 8 * k), vd), vm));
    }
}

void qtk_dequantize_row_q4_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        store_affine32(nibbles32(x[i].qs), qtk_h2f(x[i].d), qtk_h2f(x[i].m), y + i * QK4_1);
    }
}

void qtk_dequantize_row_q5_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const __m256i missing = _mm256_andnot_si256(bits32_to_mask(rd_u32(x[i].qh)), _mm256_set1_epi8((char)0xF0));
        store_scaled32(_mm256_or_si256(nibbles32(x[i].qs), missing), _mm256_set1_ps(qtk_h2f(x[i].d)), y + i * QK5_0);
    }
}

void qtk_dequantize_row_q5_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const __m256i hb = _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), _mm256_set1_epi8(0x10));
        store_affine32(_mm256_or_si256(nibbles32(x[i].qs), hb), qtk_h2f(x[i].d), qtk_h2f(x[i].m), y + i * QK5_1);
    }
}

void qtk_dequantize_row_q8_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const __m256 d = _mm256_set1_ps(qtk_h2f(x[i].d));
        for (int k = 0; k < 4; ++k) {
            _mm256_storeu_ps(y + i * QK8_0 + 8 * k, _mm256_mul_ps(i8x8_ps(x[i].qs + 8 * k), d));
        }
    }
}

void qtk_dequantize_row_q8_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const __m256 d = _mm256_set1_ps(qtk_h2f(x[i].d));
        for (int k = 0; k < 4; ++k) {
            _mm256_storeu_ps(y + i * QK8_1 + 8 * k, _mm256_mul_ps(i8x8_ps(x[i].qs + 8 * k), d));
        }
    }
}

void qtk_dequantize_row_q8_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const __m256 d = _mm256_set1_ps(x[i].d);
        for (int k = 0; k < QK_K / 8; ++k) {
            _mm256_storeu_ps(y + i * QK_K + 8 * k, _mm256_mul_ps(d, i8x8_ps(x[i].qs + 8 * k)));
        }
    }
}

void qtk_dequantize_row_q2_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        float *out = y + i * QK_K;
        for (int h = 0; h < 2; ++h) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; ++k) {
                uint8_t lv[32];
                _mm256_storeu_si256((__m256i *)lv, _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3));
                const int j = 8 * h + 2 * k;
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = x[i].scales[j + half];
                    store_dq_minus_m16(lv + 16 * half, d * (sc & 0xF), dmin * (sc >> 4), out + 16 * (j + half));
                }
            }
        }
    }
}

void qtk_dequantize_row_q3_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d_all = qtk_h2f(x[i].d);
        const uint32_t a0 = rd_u32(x[i].scales), a1 = rd_u32(x[i].scales + 4), t = rd_u32(x[i].scales + 8);
        uint32_t u[4];
        u[0] = (a0 & 0x0F0F0F0Fu) | ((t & 0x03030303u) << 4);
        u[1] = (a1 & 0x0F0F0F0Fu) | (((t >> 2) & 0x03030303u) << 4);
        u[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (((t >> 4) & 0x03030303u) << 4);
        u[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (((t >> 6) & 0x03030303u) << 4);
        const uint8_t *sc = (const uint8_t *)u;
        const __m256i hm = loadu256(x[i].hmask);
        float *out = y + i * QK_K;
        for (int h = 0; h < 2; ++h) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; ++k) {
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
                const __m256i lv = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hb, 2)), four);
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, lv);
                const int j = 8 * h + 2 * k;
                for (int half = 0; half < 2; ++half) {
                    const __m256 dl = _mm256_set1_ps(d_all * (sc[j + half] - 32));
                    float *o = out + 16 * (j + half);
                    _mm256_storeu_ps(o, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half)));
                    _mm256_storeu_ps(o + 8, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half + 8)));
                }
            }
        }
    }
}

static inline void store_dq_minus_m32(__m256i q, float d, float m, float *y) {
    uint8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    store_dq_minus_m16(tmp, d, m, y);
    store_dq_minus_m16(tmp + 16, d, m, y + 16);
}

void qtk_dequantize_row_q4_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        uint32_t u[4];
        k4_scales(x[i].scales, u);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        for (int c = 0; c < 4; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            float *out = y + i * QK_K + 64 * c;
            store_dq_minus_m32(_mm256_and_si256(q, m4), d * sc[2 * c], dmin * mn[2 * c], out);
            store_dq_minus_m32(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), d * sc[2 * c + 1], dmin * mn[2 * c + 1],
                               out + 32);
        }
    }
}

void qtk_dequantize_row_q5_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        uint32_t u[4];
        k4_scales(x[i].scales, u);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        const __m256i qh = loadu256(x[i].qh);
        for (int c = 0; c < 4; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            float *out = y + i * QK_K + 64 * c;
            store_dq_minus_m32(_mm256_or_si256(_mm256_and_si256(q, m4), h0), d * sc[2 * c], dmin * mn[2 * c], out);
            store_dq_minus_m32(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1), d * sc[2 * c + 1],
                               dmin * mn[2 * c + 1], out + 32);
        }
    }
}

void qtk_dequantize_row_q6_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = loadu256(x[i].ql + 64 * h), ql1 = loadu256(x[i].ql + 64 * h + 32);
            const __m256i qh = loadu256(x[i].qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)),
            };
            for (int k = 0; k < 4; ++k) {
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, _mm256_sub_epi8(q[k], off));
                const int j = 8 * h + 2 * k;
                float *o = y + i * QK_K + 128 * h + 32 * k;
                for (int half = 0; half < 2; ++half) {
                    const __m256 dl = _mm256_set1_ps(d * x[i].scales[j + half]);
                    _mm256_storeu_ps(o + 16 * half, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half)));
                    _mm256_storeu_ps(o + 16 * half + 8, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half + 8)));
                }
            }
        }
    }
}

static inline void store_dl_times32(__m256i q, float dl, float *y) {
    int8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    const __m256 vd = _mm256_set1_ps(dl);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(vd, i8x8_ps(tmp + 8 * k)));
    }
}

void qtk_dequantize_row_iq4_nl_avx2(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const __m256i lut = iq4_lut();
    for (int64_t i = 0; i < n / QK4_NL; ++i) {
        store_dl_times32(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs)), qtk_h2f(x[i].d), y + i * QK4_NL);
    }
}

void qtk_dequantize_row_iq4_xs_avx2(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    const __m256i lut = iq4_lut();
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            store_dl_times32(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs + 16 * ib)), d * (ls - 32),
                             y + i * QK_K + 32 * ib);
        }
    }
}

void qtk_dequantize_row_tq2_0_avx2(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int c = 0; c < 2; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            for (int k = 0; k < 4; ++k) {
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), one));
                float *o = y + i * QK_K + 128 * c + 32 * k;
                const __m256 vd = _mm256_set1_ps(d);
                for (int j = 0; j < 4; ++j) {
                    _mm256_storeu_ps(o + 8 * j, _mm256_mul_ps(i8x8_ps(tmp + 8 * j), vd));
                }
            }
        }
    }
}

void qtk_dequantize_row_tq1_0_avx2(const void *vx, float *y, int64_t n) {
    const block_tq1_0 *x = vx;
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const __m256 vd = _mm256_set1_ps(qtk_h2f(x[i].d));
        int8_t t[QK_K];
        /* trits of the 48 qs bytes (5 each) and the 4 qh bytes (4 each), in element order */
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) {
                t[32 * k + m] = (int8_t)((((uint8_t)(x[i].qs[m] * pow3[k]) * 3) >> 8) - 1);
            }
            for (int m = 0; m < 16; ++m) {
                t[160 + 16 * k + m] = (int8_t)((((uint8_t)(x[i].qs[32 + m] * pow3[k]) * 3) >> 8) - 1);
            }
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) {
                t[240 + 4 * k + j] = (int8_t)((((uint8_t)(x[i].qh[j] * pow3[k]) * 3) >> 8) - 1);
            }
        }
        for (int j = 0; j < QK_K; j += 8) {
            _mm256_storeu_ps(y + i * QK_K + j, _mm256_mul_ps(i8x8_ps(t + j), vd));
        }
    }
}

/* ---------------------------------------------------------------- CustomQuant */

void qtk_custom_unpack_avx2(const uint8_t *in, int n, int bits, uint8_t *L) {
    const uint64_t mask = (1u << bits) - 1u;
    const int len = n * bits / 8;
    for (int c = 0; c < n / 8; ++c) {
        uint64_t w = 0;
        if (c * bits + 8 <= len) {
            memcpy(&w, in + c * bits, 8);
        } else {
            memcpy(&w, in + c * bits, (size_t)bits);
        }
        for (int j = 0; j < 8; ++j) {
            L[8 * c + j] = (uint8_t)((w >> (bits * j)) & mask);
        }
    }
}

void qtk_dequantize_custom_avx2(const qtk_custom_params *p, const void *vx, float *y, int64_t n) {
    const uint8_t *x = vx;
    const int g = p->group;
    uint8_t L[1024];
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += g) {
        qtk_half dh;
        memcpy(&dh, x, 2);
        const __m256 d = _mm256_set1_ps(qtk_h2f(dh));
        if (p->symmetric) {
            qtk_custom_unpack_avx2(x + 2, g, p->bits, L);
            const __m256i half = _mm256_set1_epi32(1 << (p->bits - 1));
            for (int j = 0; j < g; j += 8) {
                const __m256i l = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(L + j)));
                _mm256_storeu_ps(y + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(l, half))));
            }
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            const __m256 m = _mm256_set1_ps(qtk_h2f(mh));
            qtk_custom_unpack_avx2(x + 4, g, p->bits, L);
            for (int j = 0; j < g; j += 8) {
                _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_mul_ps(d, u8x8_ps(L + j)), m));
            }
        }
    }
}

#include "arch/x86/avx2_end.h"

#endif
