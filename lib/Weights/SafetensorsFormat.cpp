//===- SafetensorsFormat.cpp - safetensors header rules, LLVM-free --------===//
//
// Every file is treated as hostile: each JSON value is type-checked before use
// (nlohmann's accessors would throw, or abort in a build without exceptions),
// every size is computed with overflow checks, and nothing is handed out until
// the whole header has been validated against the file.
//
// No LLVM header may be included here: the runtime compiles this file too.
//
//===----------------------------------------------------------------------===//

#include "lib/Weights/SafetensorsFormat.h"

#include "lib/Support/DTypeTable.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <set>

using nlohmann::json;

namespace moe {
namespace {

std::string formatDType(moe_dtype dtype) {
  return std::string(getSafetensorsDTypeName(dtype));
}

std::string formatShape(const std::vector<int64_t> &shape) {
  return moe::formatShape(shape.data(), shape.size());
}

/// Names the safetensors format defines but moec cannot represent; they get a
/// clearer message than a misspelt name does.
bool isUnsupportedSafetensorsDType(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "F4", "F6_E2M3", "F6_E3M2", "C64", "F8_E4M3FNUZ", "F8_E5M2FNUZ"};
  return std::find(std::begin(kNames), std::end(kNames), name) !=
         std::end(kNames);
}

/// A SAX consumer that only records the first syntax error. It is used for a
/// second pass over text the DOM parser rejected: the DOM parser, run without
/// exceptions, says only that parsing failed, not where or why.
struct SyntaxErrorFinder : nlohmann::json_sax<json> {
  std::string message;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t &) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &error) override {
    std::string_view what = error.what();
    // Drop the "[json.exception.parse_error.101] " tag; the rest says where.
    if (what.substr(0, 16) == "[json.exception.") {
      size_t end = what.find("] ");
      if (end != std::string_view::npos)
        what.remove_prefix(end + 2);
    }
    message = std::string(what);
    return false;
  }
};

/// The value of a JSON integer stored as signed (nlohmann does so only for
/// negative literals), or nullopt. get_ptr is no help here: it hands out the
/// signed view of an unsigned value too, turning 2^64 - 1 into -1.
std::optional<int64_t> getSigned(const json &value) {
  if (value.type() != json::value_t::number_integer)
    return std::nullopt;
  return static_cast<int64_t>(*value.get_ptr<const json::number_integer_t *>());
}

uint64_t read64le(const uint8_t *bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i)
    value = (value << 8) | bytes[i];
  return value;
}

/// Checks one tensor entry of a header and fills `info` (all but fileOffset,
/// which needs the header length). `dataBegin` receives data_offsets[0].
bool parseTensorEntry(std::string_view where, const std::string &name,
                      const json &entry, TensorInfo &info, uint64_t &dataBegin,
                      std::string &error) {
  std::string prefix = std::string(where) + ": tensor '" + name + "': ";
  auto fail = [&](const std::string &message) {
    error = prefix + message;
    return false;
  };
  if (!entry.is_object())
    return fail("entry is not a JSON object");
  info.name = name;

  auto dtypeIt = entry.find("dtype");
  if (dtypeIt == entry.end())
    return fail("missing \"dtype\"");
  const auto *dtypeName = dtypeIt->get_ptr<const std::string *>();
  if (!dtypeName)
    return fail("dtype is not a string");
  std::optional<moe_dtype> dtype = parseSafetensorsDType(*dtypeName);
  if (!dtype) {
    if (isUnsupportedSafetensorsDType(*dtypeName))
      return fail("unsupported dtype '" + *dtypeName + "'");
    return fail("unknown dtype '" + *dtypeName + "'");
  }
  info.dtype = *dtype;

  auto shapeIt = entry.find("shape");
  if (shapeIt == entry.end())
    return fail("missing \"shape\"");
  if (!shapeIt->is_array())
    return fail("shape is not an array");
  info.shape.clear();
  info.shape.reserve(shapeIt->size());
  for (const json &dim : *shapeIt) {
    std::string index = std::to_string(info.shape.size());
    if (std::optional<int64_t> signedDim = getSigned(dim))
      if (*signedDim < 0)
        return fail("shape[" + index + "] is negative (" +
                    std::to_string(*signedDim) + ")");
    std::optional<uint64_t> value = getJSONUInt64(dim);
    if (!value)
      return fail("shape[" + index + "] is not a non-negative integer");
    if (*value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail("shape[" + index + "] (" + std::to_string(*value) +
                  ") does not fit in a signed 64-bit integer");
    info.shape.push_back(static_cast<int64_t>(*value));
  }

  auto offsetsIt = entry.find("data_offsets");
  if (offsetsIt == entry.end())
    return fail("missing \"data_offsets\"");
  std::optional<uint64_t> begin, end;
  if (offsetsIt->is_array() && offsetsIt->size() == 2) {
    begin = getJSONUInt64((*offsetsIt)[0]);
    end = getJSONUInt64((*offsetsIt)[1]);
  }
  if (!begin || !end)
    return fail("data_offsets is not an array of two unsigned integers");
  if (*begin > *end)
    return fail("data_offsets [" + std::to_string(*begin) + ", " +
                std::to_string(*end) + "): begin is after end");

  std::optional<uint64_t> needed =
      getTensorByteSize(info.dtype, info.shape.data(), info.shape.size());
  if (!needed)
    return fail("the byte size of shape " + formatShape(info.shape) + " of " +
                formatDType(info.dtype) + " overflows 64 bits");
  info.byteSize = *end - *begin;
  if (info.byteSize != *needed)
    return fail(std::to_string(info.byteSize) + " bytes of data but shape " +
                formatShape(info.shape) + " of " + formatDType(info.dtype) +
                " needs " + std::to_string(*needed));
  dataBegin = *begin;
  return true;
}

} // namespace

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

uint64_t TensorInfo::numElements() const {
  // Saturates rather than wraps for a hand-built TensorInfo; a validated one
  // cannot overflow since its byte size fits 64 bits.
  uint64_t count = 1;
  for (int64_t dim : shape) {
    uint64_t value = static_cast<uint64_t>(std::max<int64_t>(dim, 0));
    if (value != 0 && count > std::numeric_limits<uint64_t>::max() / value)
      count = std::numeric_limits<uint64_t>::max();
    else
      count *= value;
  }
  return count;
}

std::string formatShape(const int64_t *dims, size_t rank) {
  std::string text = "[";
  for (size_t i = 0; i < rank; ++i) {
    if (i != 0)
      text += ", ";
    text += std::to_string(dims[i]);
  }
  text += "]";
  return text;
}

std::optional<uint64_t> getJSONUInt64(const json &value) {
  if (const auto *number = value.get_ptr<const json::number_unsigned_t *>())
    return static_cast<uint64_t>(*number);
  // nlohmann stores a non-negative literal as unsigned, but a value built in
  // memory may be a signed non-negative one.
  if (std::optional<int64_t> number = getSigned(value))
    if (*number >= 0)
      return static_cast<uint64_t>(*number);
  return std::nullopt;
}

std::optional<int64_t> getJSONInt64(const json &value) {
  if (std::optional<int64_t> number = getSigned(value))
    return number;
  if (const auto *number = value.get_ptr<const json::number_unsigned_t *>())
    if (*number <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return static_cast<int64_t>(*number);
  return std::nullopt;
}

bool isPlainFileName(std::string_view name) {
  return !(name.empty() || name == "." ||
           name.find("..") != std::string_view::npos ||
           name.find('/') != std::string_view::npos ||
           name.find('\\') != std::string_view::npos ||
           name.find('\0') != std::string_view::npos);
}

bool parseStrictJSON(std::string_view text, json &out, std::string &syntaxError,
                     std::optional<JSONDuplicateKey> &duplicate) {
  // nlohmann takes a NUL byte for the end of the input and would ignore
  // whatever follows it; valid JSON never holds one (not even in a string,
  // where it must be escaped).
  size_t nul = text.find('\0');
  if (nul != std::string_view::npos) {
    syntaxError = "NUL byte at offset " + std::to_string(nul);
    out = json(json::value_t::discarded);
    return false;
  }
  // One set of seen keys per open object, and the key currently being parsed
  // at each level (to name the enclosing objects of a duplicate).
  std::vector<std::set<std::string>> seenKeys;
  std::vector<std::string> currentKeys;
  auto callback = [&](int, json::parse_event_t event, json &parsed) {
    switch (event) {
    case json::parse_event_t::object_start:
      seenKeys.emplace_back();
      currentKeys.emplace_back();
      break;
    case json::parse_event_t::object_end:
      if (!seenKeys.empty()) {
        seenKeys.pop_back();
        currentKeys.pop_back();
      }
      break;
    case json::parse_event_t::key: {
      const std::string *key = parsed.get_ptr<const std::string *>();
      if (!key || seenKeys.empty())
        break;
      currentKeys.back() = *key;
      if (!seenKeys.back().insert(*key).second && !duplicate) {
        JSONDuplicateKey found;
        found.path.assign(currentKeys.begin(), currentKeys.end() - 1);
        found.key = *key;
        duplicate = std::move(found);
      }
      break;
    }
    default:
      break;
    }
    return true;
  };
  const char *first = text.data();
  const char *last = text.data() + text.size();
  out = json::parse(first, last, callback, /*allow_exceptions=*/false);
  if (!out.is_discarded())
    return true;
  SyntaxErrorFinder finder;
  json::sax_parse(first, last, &finder);
  syntaxError =
      finder.message.empty() ? "malformed JSON" : std::move(finder.message);
  return false;
}

//===----------------------------------------------------------------------===//
// The header
//===----------------------------------------------------------------------===//

bool parseSafetensorsHeader(const uint8_t *file, size_t size,
                            std::string_view path, SafetensorsHeader &out,
                            std::string &error) {
  std::string where(path);
  auto fail = [&](const std::string &message) {
    error = where + ": " + message;
    return false;
  };
  uint64_t fileSize = size;
  if (fileSize < 8)
    return fail("file is too short (" + std::to_string(fileSize) +
                " bytes) to hold the 8-byte header length");
  uint64_t headerSize = read64le(file); // unaligned-safe
  if (headerSize > kMaxSafetensorsHeaderBytes)
    return fail("header length " + std::to_string(headerSize) +
                " exceeds the limit of " +
                std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  if (headerSize > fileSize - 8)
    return fail("header length " + std::to_string(headerSize) +
                " exceeds the file size " + std::to_string(fileSize));
  std::string_view headerText(reinterpret_cast<const char *>(file) + 8,
                              static_cast<size_t>(headerSize));
  // The format requires the object to start the header; anything else
  // (whitespace, a byte-order mark, an array) is rejected as other readers do.
  if (headerText.empty() || headerText.front() != '{')
    return fail("header is not a JSON object (it must start with '{')");

  std::string syntaxError;
  std::optional<JSONDuplicateKey> duplicate;
  json header;
  if (!parseStrictJSON(headerText, header, syntaxError, duplicate))
    return fail("header is not valid JSON: " + syntaxError);
  if (!header.is_object())
    return fail("header is not a JSON object");
  if (duplicate) {
    if (duplicate->path.empty()) {
      if (duplicate->key == "__metadata__")
        return fail("duplicate key '__metadata__'");
      return fail("duplicate tensor name '" + duplicate->key + "'");
    }
    if (duplicate->path.front() == "__metadata__")
      return fail("__metadata__: duplicate key '" + duplicate->key + "'");
    return fail("tensor '" + duplicate->path.front() + "': duplicate key '" +
                duplicate->key + "'");
  }

  SafetensorsHeader result;
  std::vector<uint64_t> begins;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &key = it.key();
    if (key == "__metadata__") {
      // serde-based writers may emit null for "no metadata".
      if (it->is_null())
        continue;
      if (!it->is_object())
        return fail("__metadata__ is not a JSON object");
      for (auto entry = it->begin(); entry != it->end(); ++entry) {
        const auto *value = entry->get_ptr<const std::string *>();
        if (!value)
          return fail("__metadata__ entry '" + entry.key() +
                      "' is not a string");
        result.metadata[entry.key()] = *value;
      }
      continue;
    }
    TensorInfo info;
    uint64_t begin = 0;
    if (!parseTensorEntry(where, key, *it, info, begin, error))
      return false;
    result.tensors.push_back(std::move(info));
    begins.push_back(begin);
  }

  // Sorted by [begin, end), the tensors must tile the data buffer exactly;
  // empty tensors sort before a non-empty one at the same offset.
  std::vector<TensorInfo> &tensors = result.tensors;
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (begins[a] != begins[b])
      return begins[a] < begins[b];
    if (tensors[a].byteSize != tensors[b].byteSize)
      return tensors[a].byteSize < tensors[b].byteSize;
    return tensors[a].name < tensors[b].name;
  });
  uint64_t expected = 0;
  const TensorInfo *previous = nullptr;
  uint64_t previousBegin = 0;
  for (size_t index : order) {
    const TensorInfo &tensor = tensors[index];
    uint64_t begin = begins[index];
    uint64_t end = begin + tensor.byteSize; // cannot wrap: it was parsed
    if (begin < expected)
      return fail("tensor '" + previous->name + "': data_offsets [" +
                  std::to_string(previousBegin) + ", " +
                  std::to_string(expected) + ") overlap tensor '" +
                  tensor.name + "' [" + std::to_string(begin) + ", " +
                  std::to_string(end) + ")");
    if (begin > expected)
      return fail("gap of " + std::to_string(begin - expected) +
                  " bytes before tensor '" + tensor.name + "'");
    // An empty tensor ends where it starts, so it never becomes the tensor an
    // overlap is reported against unless nothing else is.
    if (!previous || tensor.byteSize != 0 || previous->byteSize == 0) {
      previous = &tensor;
      previousBegin = begin;
    }
    expected = end;
  }

  uint64_t dataSize = fileSize - 8 - headerSize;
  if (expected != dataSize) {
    // A hostile offset can make 8 + headerSize + expected wrap around.
    if (expected > std::numeric_limits<uint64_t>::max() - 8 - headerSize)
      return fail("data buffer of " + std::to_string(expected) +
                  " bytes does not fit in the file of " +
                  std::to_string(fileSize) + " bytes");
    return fail("data buffer ends at byte " +
                std::to_string(8 + headerSize + expected) +
                " but the file has " + std::to_string(fileSize) + " bytes");
  }

  for (size_t i = 0; i < tensors.size(); ++i)
    tensors[i].fileOffset = 8 + headerSize + begins[i];
  std::sort(
      tensors.begin(), tensors.end(),
      [](const TensorInfo &a, const TensorInfo &b) { return a.name < b.name; });
  result.headerSize = headerSize;
  result.dataOffset = 8 + headerSize;
  result.dataSize = dataSize;
  out = std::move(result);
  return true;
}

} // namespace moe
