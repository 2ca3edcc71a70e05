// SPDX-License-Identifier: MIT
// Document text as DESIGN.md wants it handled before tokenization: binary files refused, invalid UTF-8 replaced
// with U+FFFD (and counted) or refused, empty documents refused. Pure functions over bytes; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace butler {

// A repaired copy of some bytes: every ill-formed UTF-8 subsequence replaced with U+FFFD (EF BF BD).
struct Utf8Repair {
    std::string text;
    int64_t n_replaced    = 0;   // U+FFFD characters inserted
    int64_t first_invalid = -1;  // byte offset of the first ill-formed subsequence, -1 when the input was valid
};

// Replaces ill-formed UTF-8 following Unicode's "substitution of maximal subparts" (Unicode 15 §3.9, Table 3-8):
// each maximal prefix of a would-be well-formed sequence becomes one U+FFFD, any other bad byte becomes one.
// Overlong forms, surrogates (U+D800..DFFF) and values over U+10FFFF are ill-formed.
Utf8Repair repair_utf8(std::string_view bytes);

// True when the bytes are not text: any NUL byte, or more than 10% of the first 64 KiB are C0 control characters
// other than \t \n \v \f \r and ESC, or bytes of ill-formed UTF-8. (Latin-1 prose has a few percent of bad
// bytes and stays text: it is repaired, not refused.)
bool looks_binary(std::string_view bytes);

// True when the text holds nothing but ASCII whitespace.
bool is_blank(std::string_view text);

}  // namespace butler
