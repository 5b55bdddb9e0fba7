/* AVX2 kernel table (filled with the reference until the SIMD kernels land). */
#include "kernels.h"
#if defined(__x86_64__) || defined(__i386__)
const qtk_kernels qtk_kernels_avx2 = {
    .name = "avx2",
    .quantize_q8_0 = qtk_quantize_row_q8_0,
    .quantize_q8_1 = qtk_quantize_row_q8_1,
    .quantize_q8_K = qtk_quantize_row_q8_K,
    .quantize_f16 = qtk_quantize_row_f16,
    .quantize_bf16 = qtk_quantize_row_bf16,
    .quantize_q8g = qtk_quantize_row_q8g_ref,
};
#endif
