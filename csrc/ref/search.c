/* Scale searches shared by the reference quantizers. See search.h. */
#include "ref/search.h"

#include "ref/common.h"

/* Signed element of largest magnitude, first one on ties; *amax gets its magnitude. */
static float signed_absmax(int n, const float *x, float *amax) {
    float best = 0.0f, max = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > best) {
            best = ax;
            max = x[i];
        }
    }
    *amax = best;
    return max;
}

static inline int clamp_int(int v, int lo, int hi) {
    return QTK_MAX(lo, QTK_MIN(hi, v));
}

float qtk_search_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw) {
    float amax;
    const float max = signed_absmax(n, x, &amax);
    if (amax < QTK_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(qtk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; ++step) {
        if (step == 0) {
            continue;
        }
        iscale = -(nmax + 0.1f * step) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(qtk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = clamp_int(qtk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float qtk_search_symmetric_descent(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = signed_absmax(n, x, &amax);
    if (amax < QTK_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(qtk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int l = clamp_int(qtk_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (l != L[i]) {
                    slx += w * x[i] * l;
                    sl2 += w * l * l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) {
            break;
        }
    }
    for (int i = 0; i < n; ++i) {
        L[i] = (int8_t)(L[i] + nmax);
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float qtk_search_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) {
            min = x[i];
        }
        if (x[i] > max) {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) {
        min = 0;
    }
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = qtk_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clamp_int(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += w[i] * diff;
    }
    if (nstep < 1) {
        *neg_min = -min;
        return scale;
    }
    uint8_t Laux[QTK_SEARCH_MAX_N];
    for (int step = 0; step <= nstep; ++step) {
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(qtk_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* make_qp_quants' first half: the levels at nmax / max and their weighted squared error (*mse);
 * returns max, or 0 with L zeroed for a group below QTK_GROUP_EPS (whose scale is 0). */
float qtk_search_positive_start(int n, int nmax, const float *x, uint8_t *L, const float *qw, float *mse) {
    float max = 0.0f;
    for (int i = 0; i < n; ++i) {
        max = QTK_MAX(max, x[i]);
    }
    if (max < QTK_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = nmax / max;
    for (int i = 0; i < n; ++i) {
        L[i] = (uint8_t)qtk_nearest_int(iscale * x[i]);
    }
    const float scale = 1 / iscale;
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * L[i];
        err += qw[i] * diff * diff;
    }
    *mse = err;
    return max;
}

/* make_qp_quants' second half: levels at the chosen inverse scale, then up to five passes moving
 * one level at a time while the weighted fit improves; returns the fitted scale. */
float qtk_search_positive_refine(int n, int nmax, const float *x, uint8_t *L, const float *qw, float iscale) {
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = QTK_MIN(nmax, qtk_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                const int l = QTK_MIN(nmax, qtk_nearest_int(x[i] * sl2 / slx));
                if (l != L[i]) {
                    slx += w * x[i] * l;
                    sl2 += w * l * l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) {
            break;
        }
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float qtk_search_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float best_mse;
    const float max = qtk_search_positive_start(n, nmax, x, L, qw, &best_mse);
    if (max == 0.0f) {
        return 0.0f;
    }
    float iscale = nmax / max;
    for (int step = -4; step <= 4; ++step) {
        if (step == 0) {
            continue;
        }
        const float iscale_s = (0.1f * step + nmax) / max;
        const float scale_s = 1 / iscale_s;
        float mse = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = QTK_MIN(nmax, qtk_nearest_int(iscale_s * x[i]));
            const float diff = x[i] - scale_s * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_s;
        }
    }
    return qtk_search_positive_refine(n, nmax, x, L, qw, iscale);
}
