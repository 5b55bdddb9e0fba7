/* The plain float formats: F32 (a copy), F16 and BF16 (round to nearest even). */
#include "ref/common.h"
#include "ref/ref.h"

void qtk_quantize_row_f32(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qtk_dequantize_row_f32(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qtk_quantize_row_f16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    qtk_half *y = vy;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = qtk_fp32_to_fp16(x[i]);
    }
}

void qtk_dequantize_row_f16(const void *vx, float *y, int64_t n) {
    const qtk_half *x = vx;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = qtk_fp16_to_fp32(x[i]);
    }
}

void qtk_quantize_row_bf16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = qtk_fp32_to_bf16(x[i]);
    }
}

void qtk_dequantize_row_bf16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = qtk_bf16_to_fp32(x[i]);
    }
}
