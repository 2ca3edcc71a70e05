// SPDX-License-Identifier: MIT
// libFuzzer: the two JSONL files of `butler summarize --batch` (runtime/batch_list.h) from arbitrary bytes, and
// the document checks each "text" entry goes through (runtime/document.h). Invariants: a parsed list has unique
// ids and exactly one of path/text per item; parse_done_ids never throws; a repaired text is well-formed UTF-8
// and repairing it again changes nothing.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

#include "fuzz/fuzz_common.h"
#include "runtime/batch_list.h"
#include "runtime/document.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
    using namespace butler;
    const std::string_view content(reinterpret_cast<const char*>(data), n);
    (void)parse_done_ids(content);
    const Utf8Repair whole = repair_utf8(content);
    const Utf8Repair again = repair_utf8(whole.text);
    FUZZ_CHECK(again.n_replaced == 0 && again.text == whole.text);
    FUZZ_CHECK((whole.n_replaced == 0) == (whole.text == content));
    (void)looks_binary(content);
    try {
        const std::vector<BatchItem> items = parse_batch_list(content, "fuzz.jsonl", "/base");
        std::set<std::string> ids;
        for (const BatchItem& it : items) {
            FUZZ_CHECK(ids.insert(it.id).second);
            if (!it.path.empty()) FUZZ_CHECK(it.text.empty());
            const Utf8Repair r = repair_utf8(it.text);
            FUZZ_CHECK(repair_utf8(r.text).n_replaced == 0);
            (void)is_blank(r.text);
        }
    } catch (const Error& e) {
        FUZZ_CHECK(e.status() == Status::InvalidArg);
    }
    return 0;
}
