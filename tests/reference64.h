// SPDX-License-Identifier: MIT
// Float64 building blocks of the reference forwards in tests/ (written from the architectures' definitions,
// independently of runtime/ and cpu_kernels/).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace butler::test {

using Vec = std::vector<double>;

inline Vec rmsnorm64(const double* x, const std::vector<float>& w, size_t n, double eps) {
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double s = 1.0 / std::sqrt(ss / double(n) + eps);
    Vec out(n);
    for (size_t i = 0; i < n; ++i) out[i] = x[i] * s * double(w[i]);
    return out;
}

inline Vec matvec64(const std::vector<float>& w, const Vec& x, size_t rows) {
    const size_t cols = x.size();
    Vec y(rows, 0.0);
    for (size_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (size_t c = 0; c < cols; ++c) acc += double(w[r * cols + c]) * x[c];
        y[r] = acc;
    }
    return y;
}

// theta_i = pos * base^(-2i/d) / divisor_i; neox pairs (i, i + d/2), otherwise (2i, 2i + 1).
inline void rope64(double* x, size_t d, double pos, double base, const std::vector<float>& divisors, bool neox) {
    for (size_t i = 0; i < d / 2; ++i) {
        double theta = pos * std::pow(base, -2.0 * double(i) / double(d));
        if (!divisors.empty()) theta /= double(divisors[i]);
        const size_t i0 = neox ? i : 2 * i, i1 = neox ? i + d / 2 : 2 * i + 1;
        const double a = x[i0], b = x[i1];
        x[i0] = a * std::cos(theta) - b * std::sin(theta);
        x[i1] = a * std::sin(theta) + b * std::cos(theta);
    }
}

// acc[t] += softmax(logit[lo, hi))[t] for t in [lo, hi): one head's attention weights, added into the mass a
// group of heads gives each token.
inline void add_softmax64(const Vec& logit, size_t lo, size_t hi, Vec& acc) {
    double m = -INFINITY, sum = 0;
    for (size_t t = lo; t < hi; ++t) m = std::max(m, logit[t]);
    for (size_t t = lo; t < hi; ++t) sum += std::exp(logit[t] - m);
    for (size_t t = lo; t < hi; ++t) acc[t] += std::exp(logit[t] - m) / sum;
}

// max |got - ref| / max |ref|
inline double rel_error(const float* got, const Vec& ref) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        max_diff = std::max(max_diff, std::abs(double(got[i]) - ref[i]));
        max_ref = std::max(max_ref, std::abs(ref[i]));
    }
    return max_diff / max_ref;
}

}  // namespace butler::test
