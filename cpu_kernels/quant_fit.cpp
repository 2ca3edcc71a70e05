// SPDX-License-Identifier: MIT
#include "cpu_kernels/quant_fit.h"

#include <algorithm>

#include "runtime/dtype.h"

namespace butler {

void pack_scale_min_k4(const uint8_t ls[8], const uint8_t lm[8], uint8_t packed[12]) {
    for (int j = 0; j < 4; ++j) {
        packed[j]     = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
        packed[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
        packed[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
    }
}

float fit_scale_offset(const float* x, int n, int nmax, float* offset) {
    float xmin = x[0], xmax = x[0];
    for (int i = 1; i < n; ++i) {
        xmin = std::min(xmin, x[i]);
        xmax = std::max(xmax, x[i]);
    }
    xmin = std::min(xmin, 0.0f);
    if (xmax <= xmin) {
        *offset = xmin;
        return 0.0f;
    }
    float best_scale = (xmax - xmin) / nmax, best_offset = xmin, best_err = INFINITY;
    for (int step = -10; step <= 10; ++step) {
        const float iscale = (nmax + 0.1f * step) / (xmax - xmin);
        float sl = 0, sl2 = 0, sx = 0, slx = 0;
        int l_buf[32];
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * (x[i] - xmin)), 0, nmax);
            l_buf[i]    = l;
            sl += l;
            sl2 += float(l) * l;
            sx += x[i];
            slx += l * x[i];
        }
        const float det = n * sl2 - sl * sl;
        if (det <= 0.0f) continue;
        float scale = (n * slx - sl * sx) / det;
        float off   = (sl2 * sx - sl * slx) / det;
        if (off > 0.0f) {
            off   = 0.0f;
            scale = slx / sl2;
        }
        float err = 0.0f;
        for (int i = 0; i < n; ++i) {
            const float e = scale * l_buf[i] + off - x[i];
            err += e * e;
        }
        if (err < best_err) {
            best_err    = err;
            best_scale  = scale;
            best_offset = off;
        }
    }
    *offset = best_offset;
    return best_scale;
}

float fit_scale_symmetric(const float* x, int n, int nmax) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    }
    if (amax < 1e-30f) return 0.0f;
    float best_scale = vmax / -nmax, best_score = -1.0f;
    for (int step = -9; step <= 9; ++step) {
        const float iscale = -(nmax + 0.1f * step) / vmax;
        float slx = 0.0f, sl2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            slx += l * x[i];
            sl2 += float(l) * l;
        }
        if (sl2 > 0.0f && slx * slx / sl2 > best_score) {
            best_score = slx * slx / sl2;
            best_scale = slx / sl2;
        }
    }
    return best_scale;
}

void fit_k4_scales(const float* x, int nmax, uint8_t packed[12], uint16_t* d, uint16_t* dmin) {
    float scales[8], mins[8];  // mins >= 0, subtracted
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        float off;
        scales[j] = std::max(0.0f, fit_scale_offset(x + 32 * j, 32, nmax, &off));
        mins[j]   = -off;
        max_scale = std::max(max_scale, scales[j]);
        max_min   = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min   = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
        lm[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    }
    pack_scale_min_k4(ls, lm, packed);
    *d    = f32_to_f16(max_scale / 63.0f);
    *dmin = f32_to_f16(max_min / 63.0f);
}

}  // namespace butler
