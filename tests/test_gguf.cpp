// SPDX-License-Identifier: MIT
// GGUF reader and writer: round trips of every value type and several tensor types, and a corruption corpus
// (truncations, patched fields) that must each fail with Error(Format) and a message naming the field, never crash.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "runtime/gguf.h"
#include "runtime/mapped_file.h"
#include "runtime/status.h"

using namespace butler;

namespace {

// --- value builders ----------------------------------------------------------------------------------------

GgufValue v_uint(GgufType t, uint64_t x) {
    GgufValue v;
    v.type = t;
    v.u    = x;
    return v;
}

GgufValue v_int(GgufType t, int64_t x) {
    GgufValue v;
    v.type = t;
    v.i    = x;
    return v;
}

GgufValue v_float(GgufType t, double x) {
    GgufValue v;
    v.type = t;
    v.f    = x;
    return v;
}

GgufValue v_bool(bool x) {
    GgufValue v;
    v.type = GgufType::Bool;
    v.b    = x;
    return v;
}

GgufValue v_str(const std::string& s) {
    GgufValue v;
    v.type = GgufType::String;
    v.str  = s;
    return v;
}

GgufValue v_array(GgufType elem, std::vector<GgufValue> items) {
    GgufValue v;
    v.type      = GgufType::Array;
    v.elem_type = elem;
    v.items     = std::move(items);
    return v;
}

// `levels` arrays nested inside each other around one u8.
GgufValue v_nested(int levels) {
    GgufValue v = v_array(GgufType::U8, {v_uint(GgufType::U8, 7)});
    for (int k = 1; k < levels; ++k) v = v_array(GgufType::Array, {v});
    return v;
}

// Deep equality, including the fields that matter per type.
bool same_value(const GgufValue& a, const GgufValue& b) {
    if (a.type != b.type) return false;
    switch (a.type) {
        case GgufType::U8:
        case GgufType::U16:
        case GgufType::U32:
        case GgufType::U64:
            return a.u == b.u;
        case GgufType::I8:
        case GgufType::I16:
        case GgufType::I32:
        case GgufType::I64:
            return a.i == b.i;
        case GgufType::F32:
        case GgufType::F64:
            return a.f == b.f;
        case GgufType::Bool:
            return a.b == b.b;
        case GgufType::String:
            return a.str == b.str;
        case GgufType::Array:
            if (a.elem_type != b.elem_type || a.items.size() != b.items.size()) return false;
            for (size_t k = 0; k < a.items.size(); ++k)
                if (!same_value(a.items[k], b.items[k])) return false;
            return true;
    }
    return false;
}

// --- tensor fixtures ---------------------------------------------------------------------------------------

struct TensorSpec {
    std::string name;
    DType type;
    std::vector<int64_t> shape;  // outermost-first
    std::vector<uint8_t> data;
};

TensorSpec make_tensor(const std::string& name, DType type, std::vector<int64_t> shape, uint8_t seed) {
    int64_t n_rows = 1;
    for (size_t d = 0; d + 1 < shape.size(); ++d) n_rows *= shape[d];
    const int64_t n_bytes = row_bytes(type, shape.back()) * n_rows;
    std::vector<uint8_t> data(n_bytes);
    for (int64_t k = 0; k < n_bytes; ++k) data[k] = uint8_t(k * 31 + seed);
    return {name, type, std::move(shape), std::move(data)};
}

std::vector<std::pair<std::string, GgufValue>> all_values() {
    return {
        {"test.u8", v_uint(GgufType::U8, 200)},
        {"test.i8", v_int(GgufType::I8, -100)},
        {"test.u16", v_uint(GgufType::U16, 60000)},
        {"test.i16", v_int(GgufType::I16, -30000)},
        {"test.u32", v_uint(GgufType::U32, 4000000000u)},
        {"test.i32", v_int(GgufType::I32, -2000000000)},
        {"test.f32", v_float(GgufType::F32, 0.5)},
        {"test.bool_true", v_bool(true)},
        {"test.bool_false", v_bool(false)},
        {"test.string", v_str("hello, GGUF \xe2\x9c\x93")},
        {"test.empty_string", v_str("")},
        {"test.u64", v_uint(GgufType::U64, std::numeric_limits<uint64_t>::max())},
        {"test.i64", v_int(GgufType::I64, std::numeric_limits<int64_t>::min())},
        {"test.f64", v_float(GgufType::F64, 3.141592653589793)},
        {"test.arr_i64", v_array(GgufType::I64, {v_int(GgufType::I64, -1), v_int(GgufType::I64, 1LL << 40)})},
        {"test.arr_empty", v_array(GgufType::F32, {})},
        {"test.arr_bool", v_array(GgufType::Bool, {v_bool(true), v_bool(false)})},
        {"test.arr_u8", v_array(GgufType::U8, {v_uint(GgufType::U8, 1), v_uint(GgufType::U8, 255)})},
        {"test.arr_strs",
         v_array(GgufType::Array, {v_array(GgufType::String, {v_str("a"), v_str("bc")}), v_array(GgufType::String, {}),
                                   v_array(GgufType::String, {v_str("")})})},
        {"test.arr_3deep", v_nested(3)},
        {"test.arr_f64", v_array(GgufType::F64, {v_float(GgufType::F64, -0.25)})},
    };
}

std::vector<TensorSpec> all_tensors() {
    return {
        make_tensor("token_embd.weight", DType::F32, {3, 8}, 1),
        make_tensor("blk.0.attn_q.weight", DType::F16, {5, 6}, 2),
        make_tensor("blk.0.ffn_up.weight", DType::Q8_0, {2, 64}, 3),
        make_tensor("blk.0.ffn_down.weight", DType::Q4_K, {2, 256}, 4),
        make_tensor("output_norm.weight", DType::F32, {7}, 5),
        make_tensor("four_d", DType::BF16, {2, 1, 3, 2}, 6),
    };
}

GgufWriter rich_writer(uint64_t alignment) {
    GgufWriter w(alignment);
    w.set_u32("conv.u32", 7);
    w.set_i32("conv.i32", -7);
    w.set_u64("conv.u64", 1ULL << 40);
    w.set_f32("conv.f32", 1.5f);
    w.set_bool("conv.bool", true);
    w.set_string("conv.string", "llama");
    w.set_strings("conv.strings", {"<s>", "</s>", ""});
    w.set_f32s("conv.f32s", {0.0f, -1.0f, 2.5f});
    w.set_i32s("conv.i32s", {-3, 0, 3});
    for (const auto& [key, value] : all_values()) w.set_value(key, value);
    for (const TensorSpec& t : all_tensors()) w.add_tensor(t.name, t.type, t.shape, t.data);
    return w;
}

void check_rich(const GgufFile& f, uint64_t alignment) {
    CHECK(f.version() == 3);
    CHECK(f.alignment() == alignment);
    CHECK(f.data_offset() % alignment == 0);
    // The writer adds general.alignment only when it is not the default.
    if (alignment == 32)
        CHECK(f.find("general.alignment") == nullptr);
    else
        CHECK(f.require<uint32_t>("general.alignment") == alignment);

    for (const auto& [key, value] : all_values()) {
        const GgufValue* got = f.find(key);
        REQUIRE_MESSAGE(got != nullptr, key);
        CHECK_MESSAGE(same_value(*got, value), key);
    }
    CHECK(f.require<uint32_t>("conv.u32") == 7);
    CHECK(f.require<int32_t>("conv.i32") == -7);
    CHECK(f.require<uint64_t>("conv.u64") == (1ULL << 40));
    CHECK(f.require<float>("conv.f32") == 1.5f);
    CHECK(f.require<bool>("conv.bool"));
    CHECK(f.require<std::string>("conv.string") == "llama");
    CHECK(f.require<std::vector<std::string>>("conv.strings") == std::vector<std::string>{"<s>", "</s>", ""});
    CHECK(f.require<std::vector<float>>("conv.f32s") == std::vector<float>{0.0f, -1.0f, 2.5f});
    CHECK(f.require<std::vector<int32_t>>("conv.i32s") == std::vector<int32_t>{-3, 0, 3});

    const std::vector<TensorSpec> specs = all_tensors();
    REQUIRE(f.tensors().size() == specs.size());
    for (size_t k = 0; k < specs.size(); ++k) {
        const TensorSpec& s     = specs[k];
        const GgufTensorInfo& t = f.require_tensor(s.name);
        CHECK(&t == &f.tensors()[k]);  // file order
        CHECK(t.type == s.type);
        CHECK(t.n_dims == int(s.shape.size()));
        CHECK(t.shape() == s.shape);
        CHECK(t.ne[0] == s.shape.back());
        CHECK(t.n_bytes == s.data.size());
        CHECK(t.offset % alignment == 0);
        CHECK((f.data_offset() + t.offset) % alignment == 0);
        REQUIRE(t.data != nullptr);
        CHECK(std::memcmp(t.data, s.data.data(), s.data.size()) == 0);
    }
    CHECK(f.tensor("no.such.tensor") == nullptr);
}

// --- corruption helpers --------------------------------------------------------------------------------------

using Bytes = std::vector<uint8_t>;

// Offset just past the first occurrence of `needle` (a key or tensor name, whose length prefix precedes it).
size_t after(const Bytes& b, const std::string& needle) {
    const auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
    REQUIRE_MESSAGE(it != b.end(), needle);
    return size_t(it - b.begin()) + needle.size();
}

void put_u32(Bytes& b, size_t at, uint32_t v) {
    REQUIRE(at + 4 <= b.size());
    std::memcpy(b.data() + at, &v, 4);
}

void put_u64(Bytes& b, size_t at, uint64_t v) {
    REQUIRE(at + 8 <= b.size());
    std::memcpy(b.data() + at, &v, 8);
}

uint64_t get_u64(const Bytes& b, size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
}

// The message of the Error(Format) parsing `b` throws, or a description of what happened instead.
std::string format_error(const Bytes& b) {
    try {
        GgufFile::from_memory(b, "bad.gguf");
    } catch (const Error& e) {
        if (e.status() != Status::Format)
            return std::string("wrong status ") + status_name(e.status()) + ": " + e.what();
        return e.what();
    } catch (const std::exception& e) {
        return std::string("not a butler::Error: ") + e.what();
    }
    return "no error";
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

#define CHECK_FORMAT_ERROR(bytes, ...)                                                   \
    do {                                                                                 \
        const std::string msg_ = format_error(bytes);                                    \
        CHECK_MESSAGE(msg_.rfind("bad.gguf: ", 0) == 0, msg_);                           \
        for (const std::string& part_ : std::initializer_list<std::string>{__VA_ARGS__}) \
            CHECK_MESSAGE(contains(msg_, part_), part_, " in: ", msg_);                  \
    } while (0)

// A small valid file whose fields the corruption tests patch by locating their names.
// Tensor 'tensor.a' is F32 (rows 2, cols 32); 'tensor.b' is Q8_0 (1, 64) and comes last.
GgufWriter small_writer() {
    GgufWriter w;
    w.set_u32("test.u32", 5);
    w.set_string("test.str", "abc");
    w.set_value("test.arr", v_array(GgufType::I64, {v_int(GgufType::I64, 1), v_int(GgufType::I64, 2)}));
    w.set_bool("test.bool", true);
    w.set_u32("test.dup1", 1);
    w.set_u32("test.dup2", 2);
    const TensorSpec a = make_tensor("tensor.a", DType::F32, {2, 32}, 9);
    const TensorSpec b = make_tensor("tensor.b", DType::Q8_0, {1, 64}, 10);
    w.add_tensor(a.name, a.type, a.shape, a.data);
    w.add_tensor(b.name, b.type, b.shape, b.data);
    return w;
}

Bytes small_file() {
    return small_writer().to_bytes();
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("butler_test_gguf_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

}  // namespace

TEST_SUITE("gguf") {
    TEST_CASE("round trip through memory, every value type and several tensor types") {
        for (uint64_t alignment : {32u, 64u, 8u}) {
            CAPTURE(alignment);
            const Bytes bytes = rich_writer(alignment).to_bytes();
            CHECK(bytes.size() % alignment == 0);
            const auto f = GgufFile::from_memory(bytes, "mem.gguf");
            CHECK(f->path() == "mem.gguf");
            CHECK(f->file_bytes() == bytes.size());
            check_rich(*f, alignment);
            // The data pointers point at the file image's own bytes at data_offset + offset.
            for (const GgufTensorInfo& t : f->tensors())
                CHECK(std::memcmp(t.data, bytes.data() + f->data_offset() + t.offset, t.n_bytes) == 0);
        }
    }

    TEST_CASE("round trip through a file: write() then open()") {
        for (uint64_t alignment : {32u, 256u}) {
            CAPTURE(alignment);
            const std::string path = temp_path("roundtrip.gguf");
            rich_writer(alignment).write(path);
            CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
            {
                const auto f = GgufFile::open(path);
                CHECK(f->path() == path);
                CHECK(f->file_bytes() == std::filesystem::file_size(path));
                check_rich(*f, alignment);
                // The mapping is page-aligned, so aligned file offsets are aligned addresses.
                for (const GgufTensorInfo& t : f->tensors())
                    CHECK(reinterpret_cast<uintptr_t>(t.data) % alignment == 0);
            }
            std::filesystem::remove(path);
        }
    }

    TEST_CASE("writer: a file with no tensors and no keys") {
        const Bytes bytes = GgufWriter().to_bytes();
        const auto f      = GgufFile::from_memory(bytes, "empty.gguf");
        CHECK(f->metadata().empty());
        CHECK(f->tensors().empty());
    }

    TEST_CASE("writer: setting a key twice replaces it, metadata keeps file order") {
        GgufWriter w;
        w.set_u32("b", 1);
        w.set_string("a", "x");
        w.set_u32("b", 2);
        const auto f = GgufFile::from_memory(w.to_bytes(), "m.gguf");
        REQUIRE(f->metadata().size() == 2);
        CHECK(f->metadata()[0].first == "b");
        CHECK(f->metadata()[1].first == "a");
        CHECK(f->require<uint32_t>("b") == 2);
    }

    TEST_CASE("writer: write() to a missing directory throws Io and leaves nothing behind") {
        const std::string dir  = temp_path("no_such_dir");
        const std::string path = dir + "/model.gguf";
        try {
            small_writer().write(path);
            FAIL("write() did not throw");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Io);
            CHECK_MESSAGE(contains(e.what(), "model.gguf.tmp"), e.what());
        }
        CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
        CHECK_FALSE(std::filesystem::exists(path));
    }

    TEST_CASE("typed lookups: conversions, ranges and type errors name the key") {
        GgufWriter w;
        w.set_i32("neg", -1);
        w.set_u64("big", 1ULL << 40);
        w.set_u32("n", 12);
        w.set_string("s", "text");
        w.set_value("u8s", v_array(GgufType::U8, {v_uint(GgufType::U8, 3), v_uint(GgufType::U8, 4)}));
        w.set_value("f64", v_float(GgufType::F64, 0.125));
        w.set_value("mixed", v_array(GgufType::Array, {v_array(GgufType::U8, {})}));
        const auto f = GgufFile::from_memory(w.to_bytes(), "t.gguf");

        CHECK_FALSE(f->get<uint32_t>("absent").has_value());
        CHECK_FALSE(f->get<std::string>("absent").has_value());
        CHECK(f->get<int64_t>("n") == 12);
        CHECK(f->get<uint64_t>("n") == 12);
        CHECK(f->get<int32_t>("neg") == -1);
        CHECK(f->get<int64_t>("big") == (1LL << 40));
        CHECK(f->get<double>("f64") == 0.125);
        CHECK(f->get<float>("f64") == 0.125f);
        CHECK(f->get<std::vector<uint32_t>>("u8s") == std::vector<uint32_t>{3, 4});
        CHECK(f->get<std::vector<int32_t>>("u8s") == std::vector<int32_t>{3, 4});

        auto expect = [&](auto&& fn, const char* part) {
            try {
                fn();
                FAIL("no error for ", part);
            } catch (const Error& e) {
                CHECK(e.status() == Status::Format);
                CHECK_MESSAGE(contains(e.what(), part), e.what());
                CHECK_MESSAGE(contains(e.what(), "t.gguf"), e.what());
            }
        };
        expect([&] { f->get<uint32_t>("neg"); }, "key 'neg'");
        expect([&] { f->get<int32_t>("big"); }, "does not fit in i32");
        expect([&] { f->get<uint32_t>("big"); }, "key 'big'");
        expect([&] { f->get<std::string>("n"); }, "key 'n': expected a string, found u32");
        expect([&] { f->get<uint32_t>("s"); }, "key 's': expected an integer, found string");
        expect([&] { f->get<bool>("n"); }, "key 'n': expected bool");
        expect([&] { f->get<float>("n"); }, "key 'n'");
        expect([&] { f->get<std::vector<std::string>>("u8s"); }, "key 'u8s' element 0");
        expect([&] { f->get<std::vector<float>>("s"); }, "expected an array, found string");
        expect([&] { f->get<std::vector<int32_t>>("mixed"); }, "key 'mixed'");
        expect([&] { f->require<uint32_t>("absent"); }, "required key 'absent' is missing");
        expect([&] { f->require_tensor("blk.0.attn_q.weight"); }, "required tensor 'blk.0.attn_q.weight' is missing");
    }

    TEST_CASE("shape() is outermost-first, ne is innermost-first") {
        GgufWriter w;
        const TensorSpec t = make_tensor("m", DType::F32, {3, 2, 5}, 0);
        w.add_tensor(t.name, t.type, t.shape, t.data);
        const auto f               = GgufFile::from_memory(w.to_bytes(), "s.gguf");
        const GgufTensorInfo& info = f->require_tensor("m");
        CHECK(info.ne[0] == 5);
        CHECK(info.ne[1] == 2);
        CHECK(info.ne[2] == 3);
        CHECK(info.ne[3] == 1);
        CHECK(info.n_elem() == 30);
        CHECK(info.shape() == std::vector<int64_t>{3, 2, 5});
    }

    TEST_CASE("type names and predicates") {
        CHECK(gguf_type_name(GgufType::U8) == "u8");
        CHECK(gguf_type_name(GgufType::Array) == "array");
        CHECK(gguf_type_name(GgufType::F64) == "f64");
        CHECK(gguf_type_name(static_cast<GgufType>(99)) == "unknown");
        CHECK(v_int(GgufType::I64, 0).is_integer());
        CHECK_FALSE(v_bool(true).is_integer());
        CHECK_FALSE(v_float(GgufType::F32, 0).is_integer());
        CHECK(v_float(GgufType::F32, 0).is_float());
        CHECK_FALSE(v_uint(GgufType::U32, 0).is_float());
    }

    TEST_CASE("corruption: every truncation fails with Format, never crashes") {
        for (const Bytes& full : {small_file(), rich_writer(32).to_bytes(), rich_writer(64).to_bytes()}) {
            const auto f      = GgufFile::from_memory(full, "ok.gguf");
            uint64_t data_end = 0;  // end of the last tensor's data; the file's tail padding may be cut freely
            for (const GgufTensorInfo& t : f->tensors())
                data_end = std::max(data_end, f->data_offset() + t.offset + t.n_bytes);
            // End of the tensor directory: the last tensor's offset field is its last 8 bytes.
            const size_t dir_end = after(full, f->tensors().back().name) + 4 + 8 * f->tensors().back().n_dims + 4 + 8;
            for (size_t n = 0; n < data_end; ++n) {
                const Bytes cut(full.begin(), full.begin() + n);
                const std::string msg = format_error(cut);
                CAPTURE(n);
                REQUIRE_MESSAGE(msg.rfind("bad.gguf: ", 0) == 0, msg);
                if (n == 0)
                    CHECK_MESSAGE(contains(msg, "empty file"), msg);
                else if (n < 4)
                    CHECK_MESSAGE(contains(msg, "not a GGUF file"), msg);
                else if (n < dir_end)
                    CHECK_MESSAGE(contains(msg, "truncated"), msg);
                else
                    CHECK_MESSAGE(contains(msg, "runs past the end of the file"), msg);
            }
            for (size_t n = data_end; n <= full.size(); ++n)
                CHECK_NOTHROW(GgufFile::from_memory(std::span(full.data(), n), "ok.gguf"));
        }
    }

    TEST_CASE("corruption: header") {
        const Bytes good = small_file();
        REQUIRE_NOTHROW(GgufFile::from_memory(good, "ok.gguf"));
        {
            Bytes b = good;
            b[0]    = 'X';
            CHECK_FORMAT_ERROR(b, "not a GGUF file");
        }
        for (uint32_t version : {0u, 1u, 4u, 0xffffffffu}) {
            Bytes b = good;
            put_u32(b, 4, version);
            CHECK_FORMAT_ERROR(b, "header", "unsupported GGUF version", std::to_string(version).c_str());
        }
        {
            Bytes b = good;
            put_u32(b, 4, 0x03000000u);
            CHECK_FORMAT_ERROR(b, "big-endian");
        }
        {
            Bytes b = good;
            put_u32(b, 4, 2);  // v2 has the v3 layout
            CHECK(GgufFile::from_memory(b, "v2.gguf")->version() == 2);
        }
        for (uint64_t count :
             std::initializer_list<uint64_t>{1ULL << 60, std::numeric_limits<uint64_t>::max(), uint64_t(good.size())}) {
            Bytes b = good;
            put_u64(b, 8, count);
            CHECK_FORMAT_ERROR(b, "header", "tensor_count is", "truncated or corrupt");
            b = good;
            put_u64(b, 16, count);
            CHECK_FORMAT_ERROR(b, "header", "kv_count is", "truncated or corrupt");
        }
    }

    TEST_CASE("corruption: key/value section") {
        const Bytes good = small_file();
        {
            Bytes b = good;
            put_u64(b, 24, 1ULL << 62);  // length of the first key
            CHECK_FORMAT_ERROR(b, "key #0", "truncated or corrupt", "length 4611686018427387904");
        }
        {
            Bytes b = good;
            put_u64(b, after(good, "test.str") + 4, 1ULL << 60);
            CHECK_FORMAT_ERROR(b, "key 'test.str'", "string value has length");
        }
        {
            Bytes b = good;
            put_u64(b, after(good, "test.arr") + 4 + 4, 1ULL << 60);
            CHECK_FORMAT_ERROR(b, "key 'test.arr'", "array count", "truncated or corrupt");
        }
        {
            Bytes b = good;
            put_u64(b, after(good, "test.arr") + 4 + 4, std::numeric_limits<uint64_t>::max());
            CHECK_FORMAT_ERROR(b, "key 'test.arr'", "array count");
        }
        {
            Bytes b = good;
            put_u32(b, after(good, "test.u32"), 99);
            CHECK_FORMAT_ERROR(b, "key 'test.u32'", "unknown value type id 99");
        }
        {
            Bytes b = good;
            put_u32(b, after(good, "test.u32"), 13);
            CHECK_FORMAT_ERROR(b, "key 'test.u32'", "unknown value type id 13");
        }
        {
            Bytes b = good;
            put_u32(b, after(good, "test.arr") + 4, 0x80000000u);
            CHECK_FORMAT_ERROR(b, "key 'test.arr'", "unknown array element type id");
        }
        {
            Bytes b                         = good;
            b[after(good, "test.bool") + 4] = 2;
            CHECK_FORMAT_ERROR(b, "key 'test.bool'", "bool value is 2");
        }
        {
            Bytes b                         = good;
            b[after(good, "test.dup2") - 1] = '1';
            CHECK_FORMAT_ERROR(b, "key 'test.dup1'", "duplicate key");
        }
        {
            // Hand-built: one key of length 0.
            Bytes b = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
            b.resize(64, 0);                                      // room enough that kv_count passes its size check
            put_u64(b, 16, 1);                                    // kv_count
            put_u32(b, 32, static_cast<uint32_t>(GgufType::U8));  // the key's type, after an empty key
            CHECK_FORMAT_ERROR(b, "key #0", "empty key");
        }
    }

    TEST_CASE("corruption: array nesting depth") {
        for (int levels : {8, 9, 40}) {
            CAPTURE(levels);
            GgufWriter w;
            w.set_value("deep", v_nested(levels));
            const Bytes b = w.to_bytes();
            if (levels <= 8)
                CHECK_NOTHROW(GgufFile::from_memory(b, "ok.gguf"));
            else
                CHECK_FORMAT_ERROR(b, "key 'deep'", "nested deeper than 8");
        }
    }

    TEST_CASE("corruption: general.alignment") {
        for (uint32_t alignment : {0u, 3u, 48u}) {
            GgufWriter w = small_writer();
            w.set_u32("general.alignment", alignment);  // the layout stays 32-aligned; the key lies
            CHECK_FORMAT_ERROR(w.to_bytes(), "key 'general.alignment'", "not a non-zero power of two");
        }
        GgufWriter w = small_writer();
        w.set_string("general.alignment", "32");
        CHECK_FORMAT_ERROR(w.to_bytes(), "key 'general.alignment'", "must be a u32");
    }

    TEST_CASE("corruption: tensor directory") {
        const Bytes good    = small_file();
        const size_t a      = after(good, "tensor.a");  // n_dims, ne[0], ne[1], type, offset follow
        const size_t b_at   = after(good, "tensor.b");
        const size_t a_type = a + 4 + 16;
        const size_t b_type = b_at + 4 + 16, b_offset = b_type + 4;

        for (uint32_t n_dims : {0u, 5u, 0xffffffffu}) {
            Bytes b = good;
            put_u32(b, a, n_dims);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "n_dims is");
        }
        {
            Bytes b = good;
            put_u64(b, a + 4, 0);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "ne[0] is 0");
        }
        {
            Bytes b = good;
            put_u64(b, a + 4 + 8, std::numeric_limits<uint64_t>::max());  // -1 as int64
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "ne[1] is -1");
        }
        {
            Bytes b = good;
            put_u64(b, a + 4, 1ULL << 32);
            put_u64(b, a + 4 + 8, 1ULL << 32);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "element count overflows");
        }
        {
            Bytes b = good;
            put_u64(b, a + 4, 1ULL << 40);  // fine arithmetically, far past the end of the file
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "runs past the end of the file");
        }
        for (uint32_t type : {4u, 99u, 0x80000000u}) {  // 4 and 5 were Q4_2/Q4_3, removed from GGML
            Bytes b = good;
            put_u32(b, a_type, type);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "unknown tensor type id");
        }
        {
            Bytes b = good;
            put_u64(b, b_at + 4, 48);  // Q8_0 blocks are 32 wide
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.b'", "not a multiple of the q8_0 block size 32");
        }
        {
            Bytes b = good;
            put_u64(b, b_offset, get_u64(good, b_offset) + 1);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.b'", "not a multiple of the alignment 32");
        }
        for (uint64_t offset :
             std::initializer_list<uint64_t>{1ULL << 20, 1ULL << 63, std::numeric_limits<uint64_t>::max() / 32 * 32}) {
            Bytes b = good;
            put_u64(b, b_offset, offset);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.b'", "runs past the end of the file");
        }
        {
            Bytes b = good;
            put_u64(b, b_at + 4 + 8, 1000);  // more rows than the file holds
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.b'", "data [offset", "runs past the end of the file");
        }
        {
            Bytes b     = good;
            b[b_at - 1] = 'a';  // tensor.b is renamed tensor.a
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.a'", "duplicate tensor name");
        }
        {
            // Drop the file's data right after its last tensor's first byte.
            const auto f            = GgufFile::from_memory(good, "ok.gguf");
            const GgufTensorInfo& t = f->require_tensor("tensor.b");
            const Bytes b(good.begin(), good.begin() + f->data_offset() + t.offset + t.n_bytes - 1);
            CHECK_FORMAT_ERROR(b, "tensor 'tensor.b'", "runs past the end of the file");
        }
    }

    TEST_CASE("files: missing, empty, not GGUF, directory") {
        try {
            GgufFile::open(temp_path("does_not_exist.gguf"));
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Io);
            CHECK_MESSAGE(contains(e.what(), "cannot open model file"), e.what());
            CHECK_MESSAGE(contains(e.what(), "does_not_exist.gguf"), e.what());
            CHECK_MESSAGE(contains(e.what(), "No such file"), e.what());
        }
        try {
            GgufFile::open(std::filesystem::temp_directory_path().string());
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Io);
        }

        // An empty file opens and maps fine (as nothing), so it is a Format error, not an Io one.
        const std::string empty = temp_path("empty.gguf");
        std::ofstream(empty).close();
        {
            MappedFile m(empty);
            CHECK(m.data() == nullptr);
            CHECK(m.n_bytes() == 0);
            CHECK(m.path() == empty);
        }
        try {
            GgufFile::open(empty);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Format);
            CHECK_MESSAGE(contains(e.what(), "empty file"), e.what());
            CHECK_MESSAGE(contains(e.what(), empty), e.what());
        }
        std::filesystem::remove(empty);

        const std::string text = temp_path("text.gguf");
        std::ofstream(text) << "this is a text file, not a model\n";
        try {
            GgufFile::open(text);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.status() == Status::Format);
            CHECK_MESSAGE(contains(e.what(), "not a GGUF file"), e.what());
        }
        {
            MappedFile m(text);
            REQUIRE(m.n_bytes() == 33);
            CHECK(std::memcmp(m.data(), "this is", 7) == 0);
        }
        std::filesystem::remove(text);
    }

}  // TEST_SUITE
