/* AVX2 dot kernels of the float weight types F32, F16 and BF16, and of BF16 weights with F32
 * activations (QTK_ACT_F32; bf16 -> f32 is a 16-bit shift), as register tiles: up to 4 weight rows
 * times up to 4 activation rows per call (qtk_vec_dot_tile_fn), each weight vector loaded and
 * converted once for all the tokens of the tile and each activation vector once for all its rows.
 *
 * Every (row, token) result is the same chain of float operations whatever the tile shape: one
 * 8-lane accumulator, acc = fma(w[i..i+8], y[i..i+8], acc) over i in steps of 8, its horizontal sum
 * (hsum_f32x8), then the n % 8 tail elements added one by one (a multiply, then an add). So a
 * token's result never depends on the rows or tokens it shares a call with: the gemv runs 4 x 1
 * tiles (four independent chains), the gemm 3 x 4 tiles, and the single-row kernels are the 1 x 1
 * tile.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

/* the 8 float values at element i of a row, by weight / activation format */
static inline __m256 ld8_f32(const void *p, int64_t i) {
    return _mm256_loadu_ps((const float *)p + i);
}

static inline __m256 ld8_f16(const void *p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const qtk_half *)p + i)));
}

static inline __m256 ld8_bf16(const void *p, int64_t i) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static inline float el_f32(const void *p, int64_t i) {
    return ((const float *)p)[i];
}

static inline float el_f16(const void *p, int64_t i) {
    return qtk_h2f(((const qtk_half *)p)[i]);
}

static inline float el_bf16(const void *p, int64_t i) {
    return qtk_bf16_to_fp32(((const uint16_t *)p)[i]);
}

/* gemv prefetch distance in bytes (1, 2 and 4 KiB tried: 2 KiB streamed F16 / BF16 / F32 rows
 * fastest from memory here; without it the 4 x 1 tile read ~20% slower than one row at a time) */
#define PF_DIST 2048
#define ADDR_F32(p, i) (((const float *)(p))[i])
#define ADDR_F16(p, i) (((const qtk_half *)(p))[i])
#define ADDR_BF16(p, i) (((const uint16_t *)(p))[i])

/* One tile of NR rows x NT tokens; s[r * ss + t]. */
#define FLOAT_TILE(name, LDW, LDW_ADDR, LDY, ELW, ELY)                                                            \
    static inline __attribute__((always_inline)) void name(int64_t n, float *s, int64_t ss, const uint8_t *x, \
                                                           int64_t xs, const void *const *y, const int NR,    \
                                                           const int NT) {                                    \
        __m256 acc[4][4];                                                                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; ++r) {                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; ++t) {                                    \
                acc[r][t] = _mm256_setzero_ps();                                                        \
            }                                                                                           \
        }                                                                                               \
        int64_t i = 0;                                                                                  \
        for (; i + 8 <= n; i += 8) {                                                                    \
            __m256 w[4];                                                                                \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; ++r) {                                    \
                w[r] = LDW(x + r * xs, i);                                                              \
                if (NT == 1 && ((i * (int64_t)sizeof(LDW_ADDR(x, 0))) & 63) == 0) {                                                         \
                    /* a gemv streams NR rows at once: fetch each ahead */                              \
                    _mm_prefetch((const char *)&LDW_ADDR(x + r * xs, i) + PF_DIST, _MM_HINT_T0);        \
                }                                                                                       \
            }                                                                                           \
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; ++t) {                                    \
                const __m256 v = LDY(y[t], i);                                                          \
                _Pragma("GCC unroll 4") for (int r = 0; r < NR; ++r) {                                                          \
                    acc[r][t] = _mm256_fmadd_ps(w[r], v, acc[r][t]);                                    \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < NR; ++r) {                                        \
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; ++t) {                                    \
                float sum = hsum_f32x8(acc[r][t]);                                                      \
                for (int64_t j = i; j < n; ++j) {                                                       \
                    sum += ELW(x + r * xs, j) * ELY(y[t], j);                                           \
                }                                                                                       \
                s[r * ss + t] = sum;                                                                    \
            }                                                                                           \
        }                                                                                               \
    }

FLOAT_TILE(tile_f32, ld8_f32, ADDR_F32, ld8_f32, el_f32, el_f32)
FLOAT_TILE(tile_f16, ld8_f16, ADDR_F16, ld8_f32, el_f16, el_f32)
FLOAT_TILE(tile_bf16, ld8_bf16, ADDR_BF16, ld8_bf16, el_bf16, el_bf16)
FLOAT_TILE(tile_bf16_f32, ld8_bf16, ADDR_BF16, ld8_f32, el_bf16, el_f32)

/* the tile shapes as compile-time constants */
#define FLOAT_TILE_DISPATCH(type, TILE)                                                                 \
    void qtk_vec_dot_tile_##type##_avx2(int64_t n, float *s, int64_t ss, const void *vx, int64_t xs,    \
                                        const void *const *y, int nr, int nt) {                         \
        const uint8_t *x = vx;                                                                          \
        switch (4 * (nr - 1) + (nt - 1)) {                                                              \
        case 0: TILE(n, s, ss, x, xs, y, 1, 1); break;                                                  \
        case 1: TILE(n, s, ss, x, xs, y, 1, 2); break;                                                  \
        case 2: TILE(n, s, ss, x, xs, y, 1, 3); break;                                                  \
        case 3: TILE(n, s, ss, x, xs, y, 1, 4); break;                                                  \
        case 4: TILE(n, s, ss, x, xs, y, 2, 1); break;                                                  \
        case 5: TILE(n, s, ss, x, xs, y, 2, 2); break;                                                  \
        case 6: TILE(n, s, ss, x, xs, y, 2, 3); break;                                                  \
        case 7: TILE(n, s, ss, x, xs, y, 2, 4); break;                                                  \
        case 8: TILE(n, s, ss, x, xs, y, 3, 1); break;                                                  \
        case 9: TILE(n, s, ss, x, xs, y, 3, 2); break;                                                  \
        case 10: TILE(n, s, ss, x, xs, y, 3, 3); break;                                                 \
        case 11: TILE(n, s, ss, x, xs, y, 3, 4); break;                                                 \
        case 12: TILE(n, s, ss, x, xs, y, 4, 1); break;                                                 \
        case 13: TILE(n, s, ss, x, xs, y, 4, 2); break;                                                 \
        default: /* larger tiles: as 2 x nt halves (the same chains per result) */                      \
            qtk_vec_dot_tile_##type##_avx2(n, s, ss, vx, xs, y, 2, nt);                                 \
            qtk_vec_dot_tile_##type##_avx2(n, s + 2 * ss, ss, x + 2 * xs, xs, y, nr - 2, nt);           \
            break;                                                                                      \
        }                                                                                               \
    }                                                                                                   \
    void qtk_vec_dot_##type##_tile1_avx2(int64_t n, float *s, const void *x, const void *y) {          \
        const void *yy[1] = {y};                                                                        \
        TILE(n, s, 1, (const uint8_t *)x, 0, yy, 1, 1);                                                 \
    }

FLOAT_TILE_DISPATCH(f32, tile_f32)
FLOAT_TILE_DISPATCH(f16, tile_f16)
FLOAT_TILE_DISPATCH(bf16, tile_bf16)
FLOAT_TILE_DISPATCH(bf16_f32, tile_bf16_f32)

#include "arch/x86/avx2_end.h"

#endif
