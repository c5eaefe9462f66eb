//===- SafetensorsFormat.h - safetensors header rules, LLVM-free -*- C++
//-*-===//
//
// The one implementation of the safetensors format's rules, in plain C++17 and
// nlohmann_json so that both the compiler (lib/Weights/Safetensors.h, which
// wraps it with LLVM types and file handling) and the runtime (runtime/, which
// must not link LLVM) validate files the same way. Nothing here opens files:
// callers hand in the bytes of a whole file.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_WEIGHTS_SAFETENSORSFORMAT_H
#define MOEC_LIB_WEIGHTS_SAFETENSORSFORMAT_H

#include "moe/dtype.h"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

/// The largest header moec accepts (the format's own limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

/// One tensor of a safetensors file.
struct TensorInfo {
  std::string name;
  moe_dtype dtype = MOE_DTYPE_INVALID;
  std::vector<int64_t> shape;
  /// Byte range of the data, relative to the start of the file (not of the data
  /// buffer).
  uint64_t fileOffset = 0;
  uint64_t byteSize = 0;

  uint64_t numElements() const;
};

/// What a valid header says about its file.
struct SafetensorsHeader {
  /// Length of the JSON header; the data buffer starts at file offset 8 +
  /// headerSize.
  uint64_t headerSize = 0;
  uint64_t dataOffset = 0;
  uint64_t dataSize = 0;
  /// Sorted by name, so listings are deterministic.
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

/// Checks the whole file `file[0..size)` against every rule of the format: the
/// file holds the 8-byte length; the header length is <=
/// kMaxSafetensorsHeaderBytes and inside the file; the header is a UTF-8 JSON
/// object (starting with '{', no repeated key at any depth) of tensor entries
/// and an optional "__metadata__" object of strings (or null); each entry has a
/// known dtype, a shape of non-negative integers and integer data_offsets
/// [begin, end] with begin <= end; end - begin == numel * dtype size (no
/// overflow); sorted by begin, the tensors tile the data buffer from 0 with no
/// hole or overlap, and the buffer ends exactly at the end of the file. On
/// success fills `out` and returns true; otherwise sets `error` to a message
/// starting with "<path>: " (and naming the tensor, if any).
bool parseSafetensorsHeader(const uint8_t *file, size_t size,
                            std::string_view path, SafetensorsHeader &out,
                            std::string &error);

/// The first key repeated inside one JSON object, with the keys of the
/// enclosing objects (outermost first) so that a message can say where it was.
struct JSONDuplicateKey {
  std::vector<std::string> path;
  std::string key;
};

/// Parses `text` as one strict JSON value (no NUL byte, valid UTF-8). Returns
/// false on a syntax error, described in `syntaxError`. nlohmann silently keeps
/// one of several equal keys, which would let a file show different contents to
/// different readers, so the first repeated key at any depth is reported in
/// `duplicate` (the parse itself still succeeds).
bool parseStrictJSON(std::string_view text, nlohmann::json &out,
                     std::string &syntaxError,
                     std::optional<JSONDuplicateKey> &duplicate);

/// The value of a JSON integer that fits in int64_t, whether nlohmann stored it
/// as signed or unsigned; nullopt for anything else (fractions, booleans,
/// strings, larger integers).
std::optional<int64_t> getJSONInt64(const nlohmann::json &value);

/// The value of a non-negative JSON integer that fits in uint64_t, or nullopt.
std::optional<uint64_t> getJSONUInt64(const nlohmann::json &value);

/// Whether `name` names a file directly inside a directory: not empty, not ".",
/// no "..", no '/', '\\' or NUL.
bool isPlainFileName(std::string_view name);

/// "[1, 2, 3]".
std::string formatShape(const int64_t *dims, size_t rank);

} // namespace moe

#endif // MOEC_LIB_WEIGHTS_SAFETENSORSFORMAT_H
