// SPDX-License-Identifier: MIT
// GGUF v3 reader and writer.
//
// The reader maps the file (MappedFile) and parses the header, the typed key/value metadata (every value type
// including nested arrays) and the tensor directory. It trusts nothing: every count, string length, offset and
// size is checked against the file before use, and a failure throws butler::Error(Status::Format) whose message
// names the file, the field (key or tensor name, or the header part) and the problem. Tensor data is never copied:
// GgufTensorInfo::data points into the mapping, which lives as long as the GgufFile.
//
// Shapes: GGUF stores ne[] innermost-first (ne[0] is the contiguous dimension). GgufTensorInfo keeps `ne` in the
// file's order and offers shape() outermost-first (PyTorch order); this file is the one place that reverses.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/dtype.h"

namespace butler {

class MappedFile;

enum class GgufType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};

std::string_view gguf_type_name(GgufType t);

// One metadata value. Scalars hold their value; arrays hold their elements (arrays of arrays nest).
// Strings are std::string (copied out of the mapping; the big tokenizer arrays cost ~10 MB, which is fine).
struct GgufValue {
    GgufType type = GgufType::U8;
    // Scalars (the field that matches `type`): unsigned ints in u, signed in i, F32/F64 in f, Bool in b.
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string str;
    // Arrays: element type and elements (each a GgufValue; arrays of arrays nest). The typed get<std::vector<T>>
    // lookups of GgufFile convert them.
    GgufType elem_type = GgufType::U8;
    std::vector<GgufValue> items;
    uint64_t n_items = 0;         // arrays: the element count, kept when the items are released
    bool items_released = false;  // see GgufFile::release_large_arrays

    bool is_integer() const;  // any of U8..I64 (not Bool)
    bool is_float() const;    // F32 or F64
};

struct GgufTensorInfo {
    std::string name;
    DType type = DType::F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // GGUF order: ne[0] innermost (contiguous)
    uint64_t offset = 0;          // relative to the start of the data section
    uint64_t n_bytes = 0;         // computed from type and ne; checked to lie inside the file
    const uint8_t* data = nullptr;

    int64_t n_elem() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    // Outermost-first shape with n_dims entries: a (rows, cols) weight matrix is shape() == {ne[1], ne[0]}.
    std::vector<int64_t> shape() const;
};

class GgufFile {
public:
    // Maps and parses `path`. Throws Error(Io) when the file cannot be opened or mapped, Error(Format) for any
    // structural problem.
    static std::unique_ptr<GgufFile> open(const std::string& path);
    // Parses an in-memory image (tests, fuzzing). `name` is used in error messages. The bytes are copied.
    static std::unique_ptr<GgufFile> from_memory(std::span<const uint8_t> bytes, const std::string& name);

    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data section
    uint64_t file_bytes() const { return n_bytes_; }

    // Metadata, in file order.
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
    const GgufValue* find(std::string_view key) const;

    // Typed lookups. get<T> returns nullopt when the key is absent and throws Error(Format) naming the key when
    // it is present with an incompatible type. T is one of: bool, uint32_t, int32_t, uint64_t, int64_t, float,
    // double, std::string, std::vector<std::string>, std::vector<float>, std::vector<int32_t>,
    // std::vector<uint32_t>. Integer lookups accept any integer type whose value fits (else Format error).
    template <typename T>
    std::optional<T> get(std::string_view key) const;
    // Like get, but an absent key is an Error(Format) naming the key and the file.
    template <typename T>
    T require(std::string_view key) const;

    // Frees the elements of metadata arrays with at least min_items elements (the tokenizer's vocabulary, once the
    // Tokenizer holds its own copy: ~100 bytes per element otherwise stay resident). Their type and n_items remain;
    // a later typed lookup of a released array is an Error(Internal).
    void release_large_arrays(uint64_t min_items);

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* tensor(std::string_view name) const;
    const GgufTensorInfo& require_tensor(std::string_view name) const;  // Error(Format) naming the tensor

private:
    GgufFile() = default;
    void parse();

    std::string path_;
    std::unique_ptr<MappedFile> map_;      // owns the bytes when opened from a path
    std::vector<uint8_t> memory_;          // owns the bytes when opened from memory
    const uint8_t* bytes_ = nullptr;
    uint64_t n_bytes_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::map<std::string, size_t, std::less<>> kv_index_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds a GGUF v3 file in memory (test fixtures, random-weight models, predictor files).
class GgufWriter {
public:
    explicit GgufWriter(uint64_t alignment = 32);

    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_string(const std::string& key, const std::string& v);
    void set_strings(const std::string& key, const std::vector<std::string>& v);
    void set_f32s(const std::string& key, const std::vector<float>& v);
    void set_i32s(const std::string& key, const std::vector<int32_t>& v);
    // Any value, including nested arrays (tests of the reader).
    void set_value(const std::string& key, const GgufValue& v);

    // Adds a tensor. `shape` is outermost-first (PyTorch order); `data` must hold exactly the bytes of that
    // shape in `type` (asserted). Data are copied.
    void add_tensor(const std::string& name, DType type, std::span<const int64_t> shape,
                    std::span<const uint8_t> data);

    // Adds a tensor whose bytes are produced only when the file is written: `fill` receives a buffer of exactly
    // the tensor's byte size and must fill all of it. write() then holds one tensor in memory at a time, so
    // multi-GB files (random-weight models) stream to disk. `fill` may be called more than once (to_bytes, write).
    using TensorFill = std::function<void(std::span<uint8_t> out)>;
    void add_tensor_streamed(const std::string& name, DType type, std::span<const int64_t> shape, TensorFill fill);

    std::vector<uint8_t> to_bytes() const;
    // Writes atomically: to `path`.tmp, then rename. Error(Io) on failure, and no file is left behind.
    void write(const std::string& path) const;

private:
    struct Tensor {
        std::string name;
        DType type;
        std::vector<int64_t> shape;  // outermost-first
        std::vector<uint8_t> data;   // empty for streamed tensors
        uint64_t n_bytes = 0;
        TensorFill fill;             // set for streamed tensors
    };
    // Header, metadata, tensor directory and the padding up to the data section.
    std::vector<uint8_t> header_bytes() const;
    // Checks the name and shape; returns the tensor's byte size.
    int64_t check_tensor(const std::string& name, DType type, std::span<const int64_t> shape) const;
    uint64_t alignment_;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<Tensor> tensors_;
};

}  // namespace butler
