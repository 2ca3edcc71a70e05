// SPDX-License-Identifier: MIT
#include "runtime/document.h"

#include <algorithm>

namespace butler {
namespace {

// Length of the well-formed sequence at s[i..], or 0 when the bytes there are ill-formed; *n_prefix is then the
// length of the maximal subpart (at least 1) to replace with one U+FFFD.
size_t well_formed_length(std::string_view s, size_t i, size_t* n_prefix) {
    const auto b          = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    *n_prefix             = 1;
    if (c < 0x80) return 1;
    size_t n         = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte (Table 3-7)
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c == 0xE0)
        n = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        n = 3;
    else if (c == 0xED)
        n = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF)
        n = 3;
    else if (c == 0xF0)
        n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        n = 4;
    else if (c == 0xF4)
        n = 4, hi = 0x8F;
    else
        return 0;  // 80..C1, F5..FF never start a sequence
    size_t k = 1;
    for (; k < n && i + k < s.size(); ++k) {
        const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (b(i + k) < lo_k || b(i + k) > hi_k) break;
    }
    if (k == n) return n;
    *n_prefix = k;
    return 0;
}

}  // namespace

Utf8Repair repair_utf8(std::string_view bytes) {
    Utf8Repair r;
    r.text.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size();) {
        size_t n_prefix = 0;
        const size_t n  = well_formed_length(bytes, i, &n_prefix);
        if (n > 0) {
            r.text.append(bytes.substr(i, n));
            i += n;
            continue;
        }
        if (r.first_invalid < 0) r.first_invalid = static_cast<int64_t>(i);
        r.text.append("\xEF\xBF\xBD");
        ++r.n_replaced;
        i += n_prefix;
    }
    return r;
}

bool looks_binary(std::string_view bytes) {
    if (bytes.find('\0') != std::string_view::npos) return true;
    const std::string_view sample = bytes.substr(0, size_t(64) << 10);
    size_t n_bad                  = 0;
    for (size_t i = 0; i < sample.size();) {
        const auto c = static_cast<unsigned char>(sample[i]);
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\v' && c != '\f' && c != '\r' && c != 0x1B) {
            ++n_bad, ++i;
            continue;
        }
        size_t n_prefix = 0;
        const size_t n  = well_formed_length(sample, i, &n_prefix);
        // A sequence cut by the end of the sample is not evidence of binary data.
        if (n == 0 && i + n_prefix < sample.size()) n_bad += n_prefix;
        i += n > 0 ? n : n_prefix;
    }
    return n_bad * 10 > sample.size();
}

bool is_blank(std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    });
}

}  // namespace butler
