// SPDX-License-Identifier: MIT
// GGUF v3 writer: the same layout the reader parses (see gguf.cpp). Every tensor's data starts at a multiple of
// the alignment, and the file ends padded to it, as ggml writes them.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/gguf.h"
#include "runtime/status.h"

namespace butler {
namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr const char* kAlignmentKey  = "general.alignment";

class Sink {
public:
    explicit Sink(std::vector<uint8_t>& out) : out_(out) {}

    template <typename T>
    void put(T v) {
        const size_t at = out_.size();
        out_.resize(at + sizeof(T));
        std::memcpy(out_.data() + at, &v, sizeof(T));
    }

    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        out_.insert(out_.end(), s.begin(), s.end());
    }

    void put_value(const GgufValue& v) {
        switch (v.type) {
            case GgufType::U8:
                put<uint8_t>(uint8_t(v.u));
                break;
            case GgufType::I8:
                put<int8_t>(int8_t(v.i));
                break;
            case GgufType::U16:
                put<uint16_t>(uint16_t(v.u));
                break;
            case GgufType::I16:
                put<int16_t>(int16_t(v.i));
                break;
            case GgufType::U32:
                put<uint32_t>(uint32_t(v.u));
                break;
            case GgufType::I32:
                put<int32_t>(int32_t(v.i));
                break;
            case GgufType::U64:
                put<uint64_t>(v.u);
                break;
            case GgufType::I64:
                put<int64_t>(v.i);
                break;
            case GgufType::F32:
                put<float>(float(v.f));
                break;
            case GgufType::F64:
                put<double>(v.f);
                break;
            case GgufType::Bool:
                put<uint8_t>(v.b ? 1 : 0);
                break;
            case GgufType::String:
                put_string(v.str);
                break;
            case GgufType::Array:
                put<uint32_t>(static_cast<uint32_t>(v.elem_type));
                put<uint64_t>(v.items.size());
                for (const GgufValue& item : v.items) {
                    BUTLER_ASSERT(item.type == v.elem_type, "array of {} holds a {}", gguf_type_name(v.elem_type),
                                  gguf_type_name(item.type));
                    put_value(item);
                }
                break;
        }
    }

    void pad_to(uint64_t alignment) {
        const uint64_t n = (alignment - out_.size() % alignment) % alignment;
        out_.insert(out_.end(), n, 0);
    }

private:
    std::vector<uint8_t>& out_;
};

GgufValue scalar(GgufType type) {
    GgufValue v;
    v.type = type;
    return v;
}

GgufValue array_of(GgufType elem_type) {
    GgufValue v;
    v.type      = GgufType::Array;
    v.elem_type = elem_type;
    return v;
}

}  // namespace

GgufWriter::GgufWriter(uint64_t alignment) : alignment_(alignment) {
    BUTLER_ASSERT(alignment != 0 && (alignment & (alignment - 1)) == 0 && alignment <= UINT32_MAX,
                  "GGUF alignment {} is not a power of two that fits in a u32", alignment);
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
    GgufValue val = scalar(GgufType::U32);
    val.u         = v;
    set_value(key, val);
}

void GgufWriter::set_i32(const std::string& key, int32_t v) {
    GgufValue val = scalar(GgufType::I32);
    val.i         = v;
    set_value(key, val);
}

void GgufWriter::set_u64(const std::string& key, uint64_t v) {
    GgufValue val = scalar(GgufType::U64);
    val.u         = v;
    set_value(key, val);
}

void GgufWriter::set_f32(const std::string& key, float v) {
    GgufValue val = scalar(GgufType::F32);
    val.f         = v;
    set_value(key, val);
}

void GgufWriter::set_bool(const std::string& key, bool v) {
    GgufValue val = scalar(GgufType::Bool);
    val.b         = v;
    set_value(key, val);
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
    GgufValue val = scalar(GgufType::String);
    val.str       = v;
    set_value(key, val);
}

void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
    GgufValue val = array_of(GgufType::String);
    val.items.reserve(v.size());
    for (const std::string& s : v) {
        val.items.push_back(scalar(GgufType::String));
        val.items.back().str = s;
    }
    set_value(key, val);
}

void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
    GgufValue val = array_of(GgufType::F32);
    val.items.reserve(v.size());
    for (float f : v) {
        val.items.push_back(scalar(GgufType::F32));
        val.items.back().f = f;
    }
    set_value(key, val);
}

void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
    GgufValue val = array_of(GgufType::I32);
    val.items.reserve(v.size());
    for (int32_t x : v) {
        val.items.push_back(scalar(GgufType::I32));
        val.items.back().i = x;
    }
    set_value(key, val);
}

// Setting a key twice replaces the value in place, so the file never holds duplicates. general.alignment may be
// set explicitly (tests write inconsistent files that way); the layout always follows the constructor's value.
void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
    BUTLER_ASSERT(!key.empty(), "GGUF keys must not be empty");
    for (auto& [k, value] : kv_) {
        if (k == key) {
            value = v;
            return;
        }
    }
    kv_.emplace_back(key, v);
}

int64_t GgufWriter::check_tensor(const std::string& name, DType type, std::span<const int64_t> shape) const {
    BUTLER_ASSERT(!name.empty(), "GGUF tensor names must not be empty");
    BUTLER_ASSERT(shape.size() >= 1 && shape.size() <= 4, "tensor '{}' has {} dims (must be 1..4)", name, shape.size());
    for (const Tensor& t : tensors_) BUTLER_ASSERT(t.name != name, "duplicate tensor '{}'", name);
    int64_t n_elem = 1;
    for (int64_t d : shape) {
        BUTLER_ASSERT(d > 0, "tensor '{}' has a dimension of {}", name, d);
        n_elem *= d;
    }
    return row_bytes(type, shape.back()) * (n_elem / shape.back());
}

void GgufWriter::add_tensor(const std::string& name, DType type, std::span<const int64_t> shape,
                            std::span<const uint8_t> data) {
    const int64_t n_bytes = check_tensor(name, type, shape);
    BUTLER_ASSERT(int64_t(data.size()) == n_bytes, "tensor '{}' ({}) needs {} bytes, got {}", name, dtype_name(type),
                  n_bytes, data.size());
    tensors_.push_back(
        Tensor{name, type, {shape.begin(), shape.end()}, {data.begin(), data.end()}, uint64_t(n_bytes), nullptr});
}

void GgufWriter::add_tensor_streamed(const std::string& name, DType type, std::span<const int64_t> shape,
                                     TensorFill fill) {
    BUTLER_ASSERT(fill != nullptr, "tensor '{}' has no fill function", name);
    const int64_t n_bytes = check_tensor(name, type, shape);
    tensors_.push_back(Tensor{name, type, {shape.begin(), shape.end()}, {}, uint64_t(n_bytes), std::move(fill)});
}

std::vector<uint8_t> GgufWriter::header_bytes() const {
    bool has_alignment_key = false;
    for (const auto& kv : kv_) has_alignment_key |= kv.first == kAlignmentKey;
    const bool write_alignment = alignment_ != kDefaultAlignment && !has_alignment_key;

    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    Sink sink(out);
    sink.put<uint32_t>(3);
    sink.put<uint64_t>(tensors_.size());
    sink.put<uint64_t>(kv_.size() + (write_alignment ? 1 : 0));
    if (write_alignment) {
        sink.put_string(kAlignmentKey);
        sink.put<uint32_t>(static_cast<uint32_t>(GgufType::U32));
        sink.put<uint32_t>(static_cast<uint32_t>(alignment_));
    }
    for (const auto& [key, value] : kv_) {
        sink.put_string(key);
        sink.put<uint32_t>(static_cast<uint32_t>(value.type));
        sink.put_value(value);
    }

    uint64_t offset = 0;  // relative to the data section
    for (const Tensor& t : tensors_) {
        sink.put_string(t.name);
        sink.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
        for (size_t d = t.shape.size(); d-- > 0;) sink.put<uint64_t>(uint64_t(t.shape[d]));  // innermost first
        sink.put<uint32_t>(static_cast<uint32_t>(t.type));
        sink.put<uint64_t>(offset);
        offset += (t.n_bytes + alignment_ - 1) / alignment_ * alignment_;
    }
    sink.pad_to(alignment_);
    return out;
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> out = header_bytes();
    Sink sink(out);
    std::vector<uint8_t> scratch;
    for (const Tensor& t : tensors_) {
        if (t.fill) {
            scratch.assign(t.n_bytes, 0);
            t.fill(scratch);
            out.insert(out.end(), scratch.begin(), scratch.end());
        } else {
            out.insert(out.end(), t.data.begin(), t.data.end());
        }
        sink.pad_to(alignment_);
    }
    return out;
}

void GgufWriter::write(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    std::FILE* f          = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) fail(Status::Io, "cannot create '{}': {}", tmp, std::strerror(errno));
    uint64_t n_written = 0;
    // One tensor in memory at a time; the data section is written in directory order with the same padding.
    auto put = [&](const uint8_t* p, size_t n) {
        if (n == 0) return true;
        if (std::fwrite(p, 1, n, f) != n) return false;
        n_written += n;
        return true;
    };
    bool wrote = false;
    int write_err = 0;
    try {
        const std::vector<uint8_t> header = header_bytes();
        wrote = put(header.data(), header.size());
        std::vector<uint8_t> scratch;
        const std::vector<uint8_t> zeros(alignment_, 0);
        for (const Tensor& t : tensors_) {
            if (!wrote) break;
            if (t.fill) {
                scratch.assign(t.n_bytes, 0);
                t.fill(scratch);
                wrote = put(scratch.data(), scratch.size());
            } else {
                wrote = put(t.data.data(), t.data.size());
            }
            const uint64_t pad = (alignment_ - n_written % alignment_) % alignment_;
            wrote = wrote && put(zeros.data(), pad);
        }
        wrote = wrote && std::fflush(f) == 0;
        write_err = errno;
    } catch (...) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
    const bool closed = std::fclose(f) == 0;
    if (!wrote || !closed) {
        const int err = wrote ? errno : write_err;
        std::remove(tmp.c_str());
        fail(Status::Io, "cannot write '{}' ({} bytes written): {}", tmp, n_written, std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        std::remove(tmp.c_str());
        fail(Status::Io, "cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
    }
}

}  // namespace butler
