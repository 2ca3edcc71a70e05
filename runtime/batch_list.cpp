// SPDX-License-Identifier: MIT
#include "runtime/batch_list.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/document.h"
#include "runtime/status.h"

namespace butler {
namespace {

using nlohmann::json;

// Calls fn(line, line_number) for each line (without its '\n'), numbered from 1.
template <typename Fn>
void for_each_line(std::string_view content, Fn&& fn) {
    int64_t n = 1;
    while (!content.empty()) {
        const size_t end = content.find('\n');
        fn(content.substr(0, end), n++);
        if (end == std::string_view::npos) break;
        content.remove_prefix(end + 1);
    }
}

}  // namespace

std::vector<BatchItem> parse_batch_list(std::string_view content, const std::string& name,
                                        const std::string& base_dir) {
    namespace fs = std::filesystem;
    std::vector<BatchItem> items;
    std::set<std::string> seen;
    const fs::path base = base_dir;
    for_each_line(content, [&](std::string_view line, int64_t n) {
        if (is_blank(line)) return;
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            fail(Status::InvalidArg, "--batch '{}' line {}: not JSON ({})", name, n, e.what());
        }
        if (!j.is_object() || !j.contains("id") || (j.contains("path") == j.contains("text")))
            fail(Status::InvalidArg,
                 "--batch '{}' line {}: want {{\"id\": ..., \"path\": ...}} or {{\"id\": ..., \"text\": ...}}", name,
                 n);
        BatchItem it;
        it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
        if (j.contains("path")) {
            if (!j["path"].is_string())
                fail(Status::InvalidArg, "--batch '{}' line {}: \"path\" must be a string", name, n);
            const fs::path p = j["path"].get<std::string>();
            it.path          = (p.is_relative() ? base / p : p).string();
        } else {
            if (!j["text"].is_string())
                fail(Status::InvalidArg, "--batch '{}' line {}: \"text\" must be a string", name, n);
            it.text = j["text"].get<std::string>();
        }
        if (!seen.insert(it.id).second)
            fail(Status::InvalidArg, "--batch '{}' line {}: id '{}' appears twice", name, n, it.id);
        items.push_back(std::move(it));
    });
    return items;
}

std::set<std::string> parse_done_ids(std::string_view content) {
    std::set<std::string> ids;
    for_each_line(content, [&](std::string_view line, int64_t) {
        if (is_blank(line)) return;
        const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("id") && j["id"].is_string()) ids.insert(j["id"].get<std::string>());
    });
    return ids;
}

}  // namespace butler
