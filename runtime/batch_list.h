// SPDX-License-Identifier: MIT
// The two JSONL files of `butler summarize --batch`, parsed from bytes (no I/O, so they can be fuzzed):
//  - the batch list LIST.jsonl: one object per non-blank line, {"id": ..., "path": ...} or {"id": ..., "text": ...};
//  - the results file RESULTS.jsonl of an earlier (maybe killed) run: the ids it already holds.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace butler {

struct BatchItem {
    std::string id;    // a string id as written; any other JSON id as its JSON text (7 -> "7")
    std::string path;  // empty: text holds the document
    std::string text;
};

// Parses a batch list. `name` is used in error messages; relative paths are made relative to `base_dir` (the
// list's directory; empty: left as written). Error(InvalidArg) naming the list and the line for a line that is not
// JSON, not an object of the two shapes above, a non-string path or text, or an id seen before.
std::vector<BatchItem> parse_batch_list(std::string_view content, const std::string& name,
                                        const std::string& base_dir);

// The ids (string "id" fields) of the JSON object lines of a results file. Lines that are not JSON (a torn last
// line from a killed run) are ignored; never throws for any content.
std::set<std::string> parse_done_ids(std::string_view content);

}  // namespace butler
