// SPDX-License-Identifier: MIT
// GGUF v3 reader (v2 is the same layout and is accepted). Layout, all little-endian:
//   "GGUF" u32 version, u64 n_tensors, u64 n_kv
//   n_kv x     { string key, u32 value type, value }
//   n_tensors x { string name, u32 n_dims, n_dims x u64 ne (innermost first), u32 ggml type, u64 offset }
//   padding to general.alignment (default 32), then the data section; tensor offsets are relative to it.
// A string is a u64 length and that many bytes; an array is a u32 element type, a u64 count and the elements.
//
// Shapes: GgufTensorInfo::ne keeps the file's innermost-first order; shape() is the one place that reverses it to
// the outermost-first order the rest of Butler uses.
#include "runtime/gguf.h"

#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "runtime/mapped_file.h"
#include "runtime/status.h"

namespace butler {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr char kMagic[4]             = {'G', 'G', 'U', 'F'};
constexpr uint64_t kDefaultAlignment = 32;
// Arrays of arrays are legal; a limit keeps a hostile file from recursing the stack away.
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims  = 4;

bool known_type(uint32_t t) {
    return t <= static_cast<uint32_t>(GgufType::F64);
}

// Smallest encoding of one value of type `t`, used to reject counts that cannot fit before allocating for them.
uint64_t min_value_bytes(GgufType t) {
    switch (t) {
        case GgufType::U8:
        case GgufType::I8:
        case GgufType::Bool:
            return 1;
        case GgufType::U16:
        case GgufType::I16:
            return 2;
        case GgufType::U32:
        case GgufType::I32:
        case GgufType::F32:
            return 4;
        case GgufType::U64:
        case GgufType::I64:
        case GgufType::F64:
        case GgufType::String:
            return 8;  // the length
        case GgufType::Array:
            return 4 + 8;  // element type and count
    }
    return 1;
}

// A bounds-checked cursor over the file image. The field (what is being read) is kept as a kind and an index or a
// name and formatted only when an error names it: a valid file is parsed without formatting anything.
class Reader {
public:
    Reader(const uint8_t* bytes, uint64_t n_bytes, const std::string& file)
        : bytes_(bytes), n_bytes_(n_bytes), file_(file) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return n_bytes_ - pos_; }
    // "<kind> #<index>", e.g. key #3.
    void set_field(std::string_view kind, uint64_t index) { kind_ = kind, index_ = index, form_ = Form::Indexed; }
    // "<kind> '<name>'", e.g. tensor 'output.weight'; name must outlive the next error or set_field.
    void set_field(std::string_view kind, std::string_view name) { kind_ = kind, name_ = name, form_ = Form::Named; }
    std::string field() const {
        switch (form_) {
            case Form::Indexed: return fmt::format("{} #{}", kind_, index_);
            case Form::Named: return fmt::format("{} '{}'", kind_, name_);
            case Form::Kind: break;
        }
        return std::string(kind_);
    }

    template <typename... Args>
    [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
        fail(Status::Format, "{}: {}: {}", file_, field(), fmt::format(format, std::forward<Args>(args)...));
    }

    void need(uint64_t n, std::string_view what) const {
        if (n > remaining())
            error("truncated: {} needs {} bytes at offset {}, but the file has {} bytes", what, n, pos_, n_bytes_);
    }

    template <typename T>
    T read(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(std::string_view what) {
        const uint64_t n = read<uint64_t>(what);
        if (n > remaining())
            error("truncated or corrupt: {} has length {} but only {} bytes remain", what, n, remaining());
        std::string s(reinterpret_cast<const char*>(bytes_ + pos_), n);
        pos_ += n;
        return s;
    }

    // Rejects `count` items of at least `min_bytes` each when they cannot fit in what is left of the file.
    void check_count(uint64_t count, uint64_t min_bytes, std::string_view what) const {
        if (count > remaining() / min_bytes)
            error("truncated or corrupt: {} is {}, which needs at least {} bytes per item but only {} bytes remain",
                  what, count, min_bytes, remaining());
    }

    void read_value(GgufType type, GgufValue& out, int depth) {
        out.type = type;
        switch (type) {
            case GgufType::U8:
                out.u = read<uint8_t>("u8 value");
                break;
            case GgufType::I8:
                out.i = read<int8_t>("i8 value");
                break;
            case GgufType::U16:
                out.u = read<uint16_t>("u16 value");
                break;
            case GgufType::I16:
                out.i = read<int16_t>("i16 value");
                break;
            case GgufType::U32:
                out.u = read<uint32_t>("u32 value");
                break;
            case GgufType::I32:
                out.i = read<int32_t>("i32 value");
                break;
            case GgufType::U64:
                out.u = read<uint64_t>("u64 value");
                break;
            case GgufType::I64:
                out.i = read<int64_t>("i64 value");
                break;
            case GgufType::F32:
                out.f = read<float>("f32 value");
                break;
            case GgufType::F64:
                out.f = read<double>("f64 value");
                break;
            case GgufType::Bool: {
                const uint8_t b = read<uint8_t>("bool value");
                if (b > 1) error("bool value is {} (must be 0 or 1)", b);
                out.b = b != 0;
                break;
            }
            case GgufType::String:
                out.str = read_string("string value");
                break;
            case GgufType::Array: {
                if (depth >= kMaxArrayDepth) error("arrays nested deeper than {} levels", kMaxArrayDepth);
                const uint32_t elem = read<uint32_t>("array element type");
                if (!known_type(elem)) error("unknown array element type id {}", elem);
                out.elem_type        = static_cast<GgufType>(elem);
                const uint64_t count = read<uint64_t>("array count");
                check_count(count, min_value_bytes(out.elem_type),
                            fmt::format("array count ({} elements)", gguf_type_name(out.elem_type)));
                out.items.resize(count);
                out.n_items = count;
                for (GgufValue& item : out.items) read_value(out.elem_type, item, depth + 1);
                break;
            }
        }
    }

private:
    const uint8_t* bytes_;
    uint64_t n_bytes_;
    uint64_t pos_ = 0;
    const std::string& file_;
    enum class Form { Kind, Indexed, Named };
    std::string_view kind_ = "header", name_;
    uint64_t index_ = 0;
    Form form_ = Form::Kind;
};

// Overflow-safe a * b for the tensor size arithmetic.
bool mul_ok(uint64_t a, uint64_t b, uint64_t& out) {
    return !__builtin_mul_overflow(a, b, &out);
}

uint64_t align_up(uint64_t x, uint64_t alignment) {
    return (x + alignment - 1) / alignment * alignment;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
    switch (t) {
        case GgufType::U8:
            return "u8";
        case GgufType::I8:
            return "i8";
        case GgufType::U16:
            return "u16";
        case GgufType::I16:
            return "i16";
        case GgufType::U32:
            return "u32";
        case GgufType::I32:
            return "i32";
        case GgufType::F32:
            return "f32";
        case GgufType::Bool:
            return "bool";
        case GgufType::String:
            return "string";
        case GgufType::Array:
            return "array";
        case GgufType::U64:
            return "u64";
        case GgufType::I64:
            return "i64";
        case GgufType::F64:
            return "f64";
    }
    return "unknown";
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::U8:
        case GgufType::I8:
        case GgufType::U16:
        case GgufType::I16:
        case GgufType::U32:
        case GgufType::I32:
        case GgufType::U64:
        case GgufType::I64:
            return true;
        default:
            return false;
    }
}

bool GgufValue::is_float() const {
    return type == GgufType::F32 || type == GgufType::F64;
}

std::vector<int64_t> GgufTensorInfo::shape() const {
    std::vector<int64_t> s(n_dims);
    for (int d = 0; d < n_dims; ++d) s[d] = ne[n_dims - 1 - d];
    return s;
}

// --- GgufFile ------------------------------------------------------------------------------------------------

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->path_    = path;
    file->map_     = std::make_unique<MappedFile>(path);
    file->bytes_   = file->map_->data();
    file->n_bytes_ = file->map_->n_bytes();
    file->parse();
    return file;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(std::span<const uint8_t> bytes, const std::string& name) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->path_ = name;
    file->memory_.assign(bytes.begin(), bytes.end());
    file->bytes_   = file->memory_.empty() ? nullptr : file->memory_.data();
    file->n_bytes_ = file->memory_.size();
    file->parse();
    return file;
}

GgufFile::~GgufFile() = default;

void GgufFile::parse() {
    if (n_bytes_ == 0) fail(Status::Format, "{}: empty file (0 bytes), not a GGUF file", path_);
    Reader r(bytes_, n_bytes_, path_);

    if (n_bytes_ < sizeof(kMagic) || std::memcmp(bytes_, kMagic, sizeof(kMagic)) != 0)
        fail(Status::Format, "{}: not a GGUF file (the first bytes are not the magic \"GGUF\")", path_);
    r.read<uint32_t>("magic");
    version_ = r.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
        // A byte-swapped 2 or 3 is a big-endian GGUF, which ggml can write; say so rather than just "version".
        const uint32_t swapped = __builtin_bswap32(version_);
        if (swapped == 2 || swapped == 3)
            r.error("big-endian GGUF (version {} byte-swapped) is not supported", swapped);
        r.error("unsupported GGUF version {} (Butler reads versions 2 and 3)", version_);
    }
    const uint64_t n_tensors = r.read<uint64_t>("tensor_count");
    const uint64_t n_kv      = r.read<uint64_t>("kv_count");
    // The smallest KV is a 1-byte key (8 + 1), a type (4) and a 1-byte value; the smallest tensor info is an
    // empty name (8), n_dims (4), one ne (8), the type (4) and the offset (8). Both must fit in what is left.
    r.check_count(n_kv, 8 + 1 + 4 + 1, "kv_count");
    r.check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor_count");

    kv_.reserve(n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
        r.set_field("key", k);
        std::string key = r.read_string("key");
        if (key.empty()) r.error("empty key");
        r.set_field("key", std::string_view(key));
        if (kv_index_.count(key) != 0) r.error("duplicate key");
        const uint32_t type = r.read<uint32_t>("value type");
        if (!known_type(type)) r.error("unknown value type id {}", type);
        GgufValue value;
        r.read_value(static_cast<GgufType>(type), value, 0);
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(std::move(key), std::move(value));
    }

    alignment_ = kDefaultAlignment;
    if (const GgufValue* a = find("general.alignment")) {
        r.set_field("key", std::string_view("general.alignment"));
        if (a->type != GgufType::U32) r.error("must be a u32, found {}", gguf_type_name(a->type));
        if (a->u == 0 || (a->u & (a->u - 1)) != 0) r.error("alignment {} is not a non-zero power of two", a->u);
        alignment_ = a->u;
    }

    tensors_.reserve(n_tensors);
    for (uint64_t t = 0; t < n_tensors; ++t) {
        r.set_field("tensor", t);
        GgufTensorInfo info;
        info.name = r.read_string("tensor name");
        if (info.name.empty()) r.error("empty tensor name");
        r.set_field("tensor", std::string_view(info.name));
        if (tensor_index_.count(info.name) != 0) r.error("duplicate tensor name");
        const uint32_t n_dims = r.read<uint32_t>("n_dims");
        if (n_dims < 1 || n_dims > kMaxDims) r.error("n_dims is {} (must be 1..{})", n_dims, kMaxDims);
        info.n_dims     = static_cast<int>(n_dims);
        uint64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = r.read<uint64_t>("ne");
            if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()))
                r.error("ne[{}] is {} (must be positive)", d, static_cast<int64_t>(ne));
            if (!mul_ok(n_elem, ne, n_elem) || n_elem > uint64_t(std::numeric_limits<int64_t>::max()))
                r.error("element count overflows at ne[{}] = {}", d, ne);
            info.ne[d] = static_cast<int64_t>(ne);
        }
        const uint32_t type       = r.read<uint32_t>("tensor type");
        const DTypeTraits* traits = find_dtype(type);
        if (traits == nullptr) r.error("unknown tensor type id {}", type);
        info.type = static_cast<DType>(type);
        if (info.ne[0] % traits->block_elems != 0)
            r.error("ne[0] = {} is not a multiple of the {} block size {}", info.ne[0], traits->name,
                    traits->block_elems);
        // n_elem / block_elems * block_bytes cannot overflow unless the product does; check it all the same.
        if (!mul_ok(n_elem / uint64_t(traits->block_elems), uint64_t(traits->block_bytes), info.n_bytes))
            r.error("byte size overflows ({} elements of {})", n_elem, traits->name);
        info.offset = r.read<uint64_t>("tensor data offset");
        if (info.offset % alignment_ != 0)
            r.error("data offset {} is not a multiple of the alignment {}", info.offset, alignment_);
        tensor_index_.emplace(info.name, tensors_.size());
        tensors_.push_back(std::move(info));
    }

    // The data section starts at the next multiple of the alignment. A file with no tensor data may end before
    // that padding, which costs nothing to accept.
    data_offset_                = align_up(r.pos(), alignment_);
    const uint64_t n_data_bytes = data_offset_ <= n_bytes_ ? n_bytes_ - data_offset_ : 0;
    for (GgufTensorInfo& info : tensors_) {
        if (info.offset > n_data_bytes || info.n_bytes > n_data_bytes - info.offset) {
            const bool abs_ok = info.offset <= std::numeric_limits<uint64_t>::max() - data_offset_;
            fail(Status::Format,
                 "{}: tensor '{}': data [offset {}{}, {} bytes] runs past the end of the file ({} bytes)", path_,
                 info.name, abs_ok ? info.offset + data_offset_ : info.offset, abs_ok ? "" : " in the data section",
                 info.n_bytes, n_bytes_);
        }
        info.data = bytes_ + data_offset_ + info.offset;
    }
}

void GgufFile::release_large_arrays(uint64_t min_items) {
    for (auto& [key, value] : kv_) {
        if (value.type != GgufType::Array || value.n_items < min_items) continue;
        std::vector<GgufValue>().swap(value.items);
        value.items_released = true;
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::require_tensor(std::string_view name) const {
    const GgufTensorInfo* info = tensor(name);
    if (info == nullptr) fail(Status::Format, "{}: required tensor '{}' is missing", path_, name);
    return *info;
}

namespace {

std::string describe(const GgufValue& v) {
    if (v.type == GgufType::Array) return fmt::format("array of {}", gguf_type_name(v.elem_type));
    return std::string(gguf_type_name(v.type));
}

template <typename T>
constexpr std::string_view int_name() {
    if constexpr (std::is_same_v<T, uint32_t>)
        return "u32";
    else if constexpr (std::is_same_v<T, int32_t>)
        return "i32";
    else if constexpr (std::is_same_v<T, uint64_t>)
        return "u64";
    else
        return "i64";
}

// Where a converted value sits (file, key, array element), formatted only for an error message.
struct ValueWhere {
    std::string_view path, key;
    int64_t element = -1;  // -1: the value itself, not an array element
};

std::string describe(const ValueWhere& w) {
    return w.element < 0 ? fmt::format("{}: key '{}'", w.path, w.key)
                         : fmt::format("{}: key '{}' element {}", w.path, w.key, w.element);
}

// Converts one value to T or explains why not.
template <typename T>
T convert_scalar(const GgufValue& v, const ValueWhere& where) {
    if constexpr (std::is_same_v<T, bool>) {
        if (v.type != GgufType::Bool) fail(Status::Format, "{}: expected bool, found {}", describe(where), describe(v));
        return v.b;
    } else if constexpr (std::is_integral_v<T>) {
        if (!v.is_integer()) fail(Status::Format, "{}: expected an integer, found {}", describe(where), describe(v));
        const bool is_signed =
            v.type == GgufType::I8 || v.type == GgufType::I16 || v.type == GgufType::I32 || v.type == GgufType::I64;
        if (is_signed) {
            if (!std::in_range<T>(v.i))
                fail(Status::Format, "{}: value {} does not fit in {}", describe(where), v.i, int_name<T>());
            return static_cast<T>(v.i);
        }
        if (!std::in_range<T>(v.u)) fail(Status::Format, "{}: value {} does not fit in {}", describe(where), v.u, int_name<T>());
        return static_cast<T>(v.u);
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_float()) fail(Status::Format, "{}: expected a float, found {}", describe(where), describe(v));
        return static_cast<T>(v.f);
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (v.type != GgufType::String) fail(Status::Format, "{}: expected a string, found {}", describe(where), describe(v));
        return v.str;
    }
}

template <typename T>
struct IsVector : std::false_type {};
template <typename E>
struct IsVector<std::vector<E>> : std::true_type {};

template <typename T>
T convert(const GgufValue& v, const ValueWhere& where) {
    if constexpr (IsVector<T>::value) {
        using E = typename T::value_type;
        if (v.type != GgufType::Array) fail(Status::Format, "{}: expected an array, found {}", describe(where), describe(v));
        if (v.items_released) fail(Status::Internal, "{}: the array's elements were released after loading", describe(where));
        T out;
        out.reserve(v.items.size());
        for (size_t k = 0; k < v.items.size(); ++k)
            out.push_back(convert_scalar<E>(v.items[k], ValueWhere{where.path, where.key, int64_t(k)}));
        return out;
    } else {
        return convert_scalar<T>(v, where);
    }
}

}  // namespace

template <typename T>
std::optional<T> GgufFile::get(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    return convert<T>(*v, ValueWhere{path_, key});
}

template <typename T>
T GgufFile::require(std::string_view key) const {
    std::optional<T> v = get<T>(key);
    if (!v) fail(Status::Format, "{}: required key '{}' is missing", path_, key);
    return std::move(*v);
}

#define BUTLER_GGUF_INSTANTIATE(T)                                          \
    template std::optional<T> GgufFile::get<T>(std::string_view key) const; \
    template T GgufFile::require<T>(std::string_view key) const;
BUTLER_GGUF_INSTANTIATE(bool)
BUTLER_GGUF_INSTANTIATE(uint32_t)
BUTLER_GGUF_INSTANTIATE(int32_t)
BUTLER_GGUF_INSTANTIATE(uint64_t)
BUTLER_GGUF_INSTANTIATE(int64_t)
BUTLER_GGUF_INSTANTIATE(float)
BUTLER_GGUF_INSTANTIATE(double)
BUTLER_GGUF_INSTANTIATE(std::string)
BUTLER_GGUF_INSTANTIATE(std::vector<std::string>)
BUTLER_GGUF_INSTANTIATE(std::vector<float>)
BUTLER_GGUF_INSTANTIATE(std::vector<int32_t>)
BUTLER_GGUF_INSTANTIATE(std::vector<uint32_t>)
#undef BUTLER_GGUF_INSTANTIATE

}  // namespace butler
