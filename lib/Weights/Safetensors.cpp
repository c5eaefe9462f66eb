//===- Safetensors.cpp - safetensors files and checkpoints ----------------===//
//
// The reader treats every file as hostile: each JSON value is type-checked
// before use (nlohmann's accessors would throw, or abort in a build without
// exceptions), every size is computed with overflow checks, and nothing is
// handed out until the whole header has been validated against the file.
//
//===----------------------------------------------------------------------===//

#include "lib/Weights/Safetensors.h"

#include "lib/Support/DType.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <set>
#include <unistd.h>

using nlohmann::json;

namespace moe {
namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os);
  os << "]";
  return text;
}

std::string formatDType(moe_dtype dtype) {
  return getSafetensorsName(dtype).str();
}

/// Names the safetensors format defines but moec cannot represent; they get a
/// clearer message than a misspelt name does.
bool isUnsupportedSafetensorsDType(llvm::StringRef name) {
  return llvm::is_contained(
      llvm::ArrayRef<llvm::StringRef>{"F4", "F6_E2M3", "F6_E3M2", "C64",
                                      "F8_E4M3FNUZ", "F8_E5M2FNUZ"},
      name);
}

/// The first repeated key found while parsing, with the keys of the enclosing
/// objects (outermost first) so the message can say where it was.
struct DuplicateKey {
  std::vector<std::string> path;
  std::string key;
};

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
    llvm::StringRef what = error.what();
    // Drop the "[json.exception.parse_error.101] " tag; the rest says where.
    if (what.starts_with("[json.exception.")) {
      size_t end = what.find("] ");
      if (end != llvm::StringRef::npos)
        what = what.drop_front(end + 2);
    }
    message = what.str();
    return false;
  }
};

/// Parses `text` as one strict JSON value. Returns a discarded value on a
/// syntax error (described in `syntaxError`). nlohmann silently keeps one of
/// several equal keys, which would let a file show different tensors to
/// different readers, so repeated keys at any depth are reported in
/// `duplicate`.
json parseJSON(llvm::StringRef text, std::string &syntaxError,
               std::optional<DuplicateKey> &duplicate) {
  // nlohmann takes a NUL byte for the end of the input and would ignore
  // whatever follows it; valid JSON never holds one (not even in a string,
  // where it must be escaped).
  size_t nul = text.find('\0');
  if (nul != llvm::StringRef::npos) {
    syntaxError = "NUL byte at offset " + std::to_string(nul);
    return json(json::value_t::discarded);
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
        DuplicateKey found;
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
  json result = json::parse(text.begin(), text.end(), callback,
                            /*allow_exceptions=*/false);
  if (result.is_discarded()) {
    SyntaxErrorFinder finder;
    json::sax_parse(text.begin(), text.end(), &finder);
    syntaxError =
        finder.message.empty() ? "malformed JSON" : std::move(finder.message);
  }
  return result;
}

/// The value of a JSON integer stored as signed (nlohmann does so only for
/// negative literals), or nullopt. get_ptr is no help here: it hands out the
/// signed view of an unsigned value too, turning 2^64 - 1 into -1.
std::optional<int64_t> getSigned(const json &value) {
  if (value.type() != json::value_t::number_integer)
    return std::nullopt;
  return static_cast<int64_t>(*value.get_ptr<const json::number_integer_t *>());
}

/// The value of an unsigned JSON integer, or nullopt for any other value
/// (negative, fractional, too large for 64 bits, or not a number).
std::optional<uint64_t> getUnsigned(const json &value) {
  if (const auto *number = value.get_ptr<const json::number_unsigned_t *>())
    return static_cast<uint64_t>(*number);
  // nlohmann stores a non-negative literal as unsigned, but a value built in
  // memory may be a signed non-negative one.
  if (std::optional<int64_t> number = getSigned(value))
    if (*number >= 0)
      return static_cast<uint64_t>(*number);
  return std::nullopt;
}

/// Checks one tensor entry of a header and fills `info` (all but fileOffset,
/// which needs the header length). `dataBegin` receives data_offsets[0].
llvm::Error parseTensorEntry(const llvm::Twine &where, const std::string &name,
                             const json &entry, TensorInfo &info,
                             uint64_t &dataBegin) {
  std::string prefix = (where + ": tensor '" + name + "': ").str();
  if (!entry.is_object())
    return makeError(prefix + "entry is not a JSON object");
  info.name = name;

  auto dtypeIt = entry.find("dtype");
  if (dtypeIt == entry.end())
    return makeError(prefix + "missing \"dtype\"");
  const auto *dtypeName = dtypeIt->get_ptr<const std::string *>();
  if (!dtypeName)
    return makeError(prefix + "dtype is not a string");
  std::optional<moe_dtype> dtype = parseSafetensorsDType(*dtypeName);
  if (!dtype) {
    if (isUnsupportedSafetensorsDType(*dtypeName))
      return makeError(prefix + "unsupported dtype '" + *dtypeName + "'");
    return makeError(prefix + "unknown dtype '" + *dtypeName + "'");
  }
  info.dtype = *dtype;

  auto shapeIt = entry.find("shape");
  if (shapeIt == entry.end())
    return makeError(prefix + "missing \"shape\"");
  if (!shapeIt->is_array())
    return makeError(prefix + "shape is not an array");
  info.shape.clear();
  info.shape.reserve(shapeIt->size());
  for (const json &dim : *shapeIt) {
    size_t index = info.shape.size();
    if (std::optional<int64_t> signedDim = getSigned(dim))
      if (*signedDim < 0)
        return makeError(prefix + "shape[" + llvm::Twine(index) +
                         "] is negative (" + llvm::Twine(*signedDim) + ")");
    std::optional<uint64_t> value = getUnsigned(dim);
    if (!value)
      return makeError(prefix + "shape[" + llvm::Twine(index) +
                       "] is not a non-negative integer");
    if (*value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return makeError(prefix + "shape[" + llvm::Twine(index) + "] (" +
                       llvm::Twine(*value) +
                       ") does not fit in a signed 64-bit integer");
    info.shape.push_back(static_cast<int64_t>(*value));
  }

  auto offsetsIt = entry.find("data_offsets");
  if (offsetsIt == entry.end())
    return makeError(prefix + "missing \"data_offsets\"");
  std::optional<uint64_t> begin, end;
  if (offsetsIt->is_array() && offsetsIt->size() == 2) {
    begin = getUnsigned((*offsetsIt)[0]);
    end = getUnsigned((*offsetsIt)[1]);
  }
  if (!begin || !end)
    return makeError(prefix +
                     "data_offsets is not an array of two unsigned integers");
  if (*begin > *end)
    return makeError(prefix + "data_offsets [" + llvm::Twine(*begin) + ", " +
                     llvm::Twine(*end) + "): begin is after end");

  std::optional<uint64_t> needed = getTensorByteSize(info.dtype, info.shape);
  if (!needed)
    return makeError(prefix + "the byte size of shape " +
                     formatShape(info.shape) + " of " +
                     formatDType(info.dtype) + " overflows 64 bits");
  info.byteSize = *end - *begin;
  if (info.byteSize != *needed)
    return makeError(prefix + llvm::Twine(info.byteSize) +
                     " bytes of data but shape " + formatShape(info.shape) +
                     " of " + formatDType(info.dtype) + " needs " +
                     llvm::Twine(*needed));
  dataBegin = *begin;
  return llvm::Error::success();
}

/// Reads `path` (an index or other small JSON file) and parses it strictly.
llvm::Expected<json> readJSONFile(llvm::StringRef path) {
  auto bufferOrErr = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                                 /*RequiresNullTerminator=*/
                                                 false);
  if (!bufferOrErr)
    return llvm::createStringError(
        bufferOrErr.getError(),
        path + ": cannot open: " + bufferOrErr.getError().message());
  llvm::StringRef text = (*bufferOrErr)->getBuffer();
  // An index names each tensor once, like the headers it indexes, so the same
  // bound keeps a hostile index from exhausting memory in the DOM parser.
  if (text.size() > kMaxSafetensorsHeaderBytes)
    return makeError(path + ": " + llvm::Twine(text.size()) +
                     " bytes exceed the limit of " +
                     llvm::Twine(kMaxSafetensorsHeaderBytes));
  std::string syntaxError;
  std::optional<DuplicateKey> duplicate;
  json value = parseJSON(text, syntaxError, duplicate);
  if (value.is_discarded())
    return makeError(path + ": not valid JSON: " + syntaxError);
  if (duplicate) {
    std::string where;
    for (const std::string &key : duplicate->path)
      where += "\"" + key + "\": ";
    return makeError(path + ": " + where + "duplicate key '" + duplicate->key +
                     "'");
  }
  return value;
}

} // namespace

//===----------------------------------------------------------------------===//
// TensorInfo
//===----------------------------------------------------------------------===//

uint64_t TensorInfo::numElements() const {
  // Saturates rather than wraps for a hand-built TensorInfo; a validated one
  // cannot overflow since its byte size fits 64 bits.
  uint64_t count = 1;
  for (int64_t dim : shape)
    count = llvm::SaturatingMultiply(
        count, static_cast<uint64_t>(std::max<int64_t>(dim, 0)));
  return count;
}

//===----------------------------------------------------------------------===//
// SafetensorsFile
//===----------------------------------------------------------------------===//

llvm::Expected<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::open(llvm::StringRef path) {
  // Only regular files: a FIFO or a device would be read until it ends, if it
  // ever does.
  llvm::sys::fs::file_status status;
  if (std::error_code ec = llvm::sys::fs::status(path, status))
    return llvm::createStringError(ec, path + ": cannot open: " + ec.message());
  if (status.type() != llvm::sys::fs::file_type::regular_file)
    return makeError(path + ": not a regular file");

  auto bufferOrErr = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                                 /*RequiresNullTerminator=*/
                                                 false);
  if (!bufferOrErr)
    return llvm::createStringError(
        bufferOrErr.getError(),
        path + ": cannot open: " + bufferOrErr.getError().message());
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path = path.str();
  file->buffer = std::move(*bufferOrErr);
  llvm::StringRef contents = file->buffer->getBuffer();
  uint64_t fileSize = contents.size();

  if (fileSize < 8)
    return makeError(path + ": file is too short (" + llvm::Twine(fileSize) +
                     " bytes) to hold the 8-byte header length");
  uint64_t headerSize =
      llvm::support::endian::read64le(contents.data()); // unaligned-safe
  if (headerSize > kMaxSafetensorsHeaderBytes)
    return makeError(path + ": header length " + llvm::Twine(headerSize) +
                     " exceeds the limit of " +
                     llvm::Twine(kMaxSafetensorsHeaderBytes) + " bytes");
  if (headerSize > fileSize - 8)
    return makeError(path + ": header length " + llvm::Twine(headerSize) +
                     " exceeds the file size " + llvm::Twine(fileSize));
  llvm::StringRef headerText = contents.substr(8, headerSize);
  // The format requires the object to start the header; anything else
  // (whitespace, a byte-order mark, an array) is rejected as other readers do.
  if (!headerText.starts_with("{"))
    return makeError(path +
                     ": header is not a JSON object (it must start with '{')");

  std::string syntaxError;
  std::optional<DuplicateKey> duplicate;
  json header = parseJSON(headerText, syntaxError, duplicate);
  if (header.is_discarded())
    return makeError(path + ": header is not valid JSON: " + syntaxError);
  if (!header.is_object())
    return makeError(path + ": header is not a JSON object");
  if (duplicate) {
    if (duplicate->path.empty()) {
      if (duplicate->key == "__metadata__")
        return makeError(path + ": duplicate key '__metadata__'");
      return makeError(path + ": duplicate tensor name '" + duplicate->key +
                       "'");
    }
    if (duplicate->path.front() == "__metadata__")
      return makeError(path + ": __metadata__: duplicate key '" +
                       duplicate->key + "'");
    return makeError(path + ": tensor '" + duplicate->path.front() +
                     "': duplicate key '" + duplicate->key + "'");
  }

  std::vector<uint64_t> begins;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &key = it.key();
    if (key == "__metadata__") {
      // serde-based writers may emit null for "no metadata".
      if (it->is_null())
        continue;
      if (!it->is_object())
        return makeError(path + ": __metadata__ is not a JSON object");
      for (auto entry = it->begin(); entry != it->end(); ++entry) {
        const auto *value = entry->get_ptr<const std::string *>();
        if (!value)
          return makeError(path + ": __metadata__ entry '" + entry.key() +
                           "' is not a string");
        file->metadata[entry.key()] = *value;
      }
      continue;
    }
    TensorInfo info;
    uint64_t begin = 0;
    if (llvm::Error error = parseTensorEntry(path, key, *it, info, begin))
      return std::move(error);
    file->tensors.push_back(std::move(info));
    begins.push_back(begin);
  }

  // Sorted by [begin, end), the tensors must tile the data buffer exactly;
  // empty tensors sort before a non-empty one at the same offset.
  std::vector<size_t> order(file->tensors.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  llvm::sort(order, [&](size_t a, size_t b) {
    if (begins[a] != begins[b])
      return begins[a] < begins[b];
    if (file->tensors[a].byteSize != file->tensors[b].byteSize)
      return file->tensors[a].byteSize < file->tensors[b].byteSize;
    return file->tensors[a].name < file->tensors[b].name;
  });
  uint64_t expected = 0;
  const TensorInfo *previous = nullptr;
  uint64_t previousBegin = 0;
  for (size_t index : order) {
    const TensorInfo &tensor = file->tensors[index];
    uint64_t begin = begins[index];
    uint64_t end = begin + tensor.byteSize; // cannot wrap: it was parsed
    if (begin < expected)
      return makeError(path + ": tensor '" + previous->name +
                       "': data_offsets [" + llvm::Twine(previousBegin) + ", " +
                       llvm::Twine(expected) + ") overlap tensor '" +
                       tensor.name + "' [" + llvm::Twine(begin) + ", " +
                       llvm::Twine(end) + ")");
    if (begin > expected)
      return makeError(path + ": gap of " + llvm::Twine(begin - expected) +
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
      return makeError(path + ": data buffer of " + llvm::Twine(expected) +
                       " bytes does not fit in the file of " +
                       llvm::Twine(fileSize) + " bytes");
    return makeError(path + ": data buffer ends at byte " +
                     llvm::Twine(8 + headerSize + expected) +
                     " but the file has " + llvm::Twine(fileSize) + " bytes");
  }

  for (size_t i = 0; i < file->tensors.size(); ++i)
    file->tensors[i].fileOffset = 8 + headerSize + begins[i];
  llvm::sort(file->tensors, [](const TensorInfo &a, const TensorInfo &b) {
    return llvm::StringRef(a.name) < llvm::StringRef(b.name);
  });
  return file;
}

const TensorInfo *SafetensorsFile::find(llvm::StringRef name) const {
  auto it = llvm::lower_bound(
      tensors, name, [](const TensorInfo &tensor, llvm::StringRef key) {
        return llvm::StringRef(tensor.name) < key;
      });
  if (it == tensors.end() || it->name != name)
    return nullptr;
  return &*it;
}

llvm::ArrayRef<uint8_t>
SafetensorsFile::getData(const TensorInfo &tensor) const {
  assert(&tensor >= tensors.data() &&
         &tensor < tensors.data() + tensors.size() && "tensor of another file");
  const auto *start =
      reinterpret_cast<const uint8_t *>(buffer->getBufferStart());
  return llvm::ArrayRef<uint8_t>(start + tensor.fileOffset, tensor.byteSize);
}

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

llvm::Expected<std::unique_ptr<Checkpoint>>
Checkpoint::open(llvm::StringRef directory) {
  if (!llvm::sys::fs::is_directory(directory))
    return makeError(directory + ": not a directory");
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  checkpoint->directory = directory.str();

  llvm::SmallString<256> indexPath(directory);
  llvm::sys::path::append(indexPath, "model.safetensors.index.json");
  llvm::SmallString<256> singlePath(directory);
  llvm::sys::path::append(singlePath, "model.safetensors");

  // The index wins when both exist: a sharded save that left an older
  // single-file one behind must not be shadowed by it.
  if (!llvm::sys::fs::exists(indexPath)) {
    if (!llvm::sys::fs::exists(singlePath))
      return makeError(directory + ": no model.safetensors or "
                                   "model.safetensors.index.json");
    auto file = SafetensorsFile::open(singlePath);
    if (!file)
      return file.takeError();
    for (const TensorInfo &tensor : (*file)->getTensors())
      checkpoint->index[tensor.name] = Entry{file->get(), &tensor};
    checkpoint->files.push_back(std::move(*file));
    return checkpoint;
  }

  llvm::Expected<json> index = readJSONFile(indexPath);
  if (!index)
    return index.takeError();
  if (!index->is_object())
    return makeError(indexPath + ": not a JSON object");
  auto weightMap = index->find("weight_map");
  if (weightMap == index->end() || !weightMap->is_object())
    return makeError(indexPath + ": no \"weight_map\" object");

  // Check every name before opening anything, so a hostile index cannot make
  // us open files outside the directory.
  std::map<std::string, std::string> shardOfTensor;
  for (auto it = weightMap->begin(); it != weightMap->end(); ++it) {
    const auto *shard = it->get_ptr<const std::string *>();
    if (!shard)
      return makeError(indexPath + ": weight_map entry for tensor '" +
                       it.key() + "' is not a string");
    llvm::StringRef name(*shard);
    if (name.empty() || name == "." || name.contains("..") ||
        name.contains('/') || name.contains('\\') || name.contains('\0'))
      return makeError(indexPath + ": tensor '" + it.key() + "': shard name '" +
                       name + "' is not a file name inside the directory");
    shardOfTensor[it.key()] = *shard;
  }

  std::map<std::string, const SafetensorsFile *> shards;
  for (const auto &[tensor, shard] : shardOfTensor) {
    if (shards.count(shard))
      continue;
    llvm::SmallString<256> shardPath(directory);
    llvm::sys::path::append(shardPath, shard);
    if (!llvm::sys::fs::exists(shardPath))
      return makeError(indexPath + ": shard '" + shard + "' (holding tensor '" +
                       tensor + "') does not exist: " + shardPath);
    auto file = SafetensorsFile::open(shardPath);
    if (!file)
      return file.takeError();
    shards[shard] = file->get();
    checkpoint->files.push_back(std::move(*file));
  }

  for (const auto &[tensor, shard] : shardOfTensor) {
    const SafetensorsFile *file = shards[shard];
    const TensorInfo *info = file->find(tensor);
    if (!info)
      return makeError(indexPath + ": tensor '" + tensor +
                       "' is mapped to shard '" + shard +
                       "', which does not contain it");
    checkpoint->index[tensor] = Entry{file, info};
  }
  return checkpoint;
}

std::optional<Checkpoint::Entry> Checkpoint::find(llvm::StringRef name) const {
  auto it = index.find(name);
  if (it == index.end())
    return std::nullopt;
  return it->second;
}

llvm::Expected<Checkpoint::Entry> Checkpoint::get(llvm::StringRef name) const {
  if (std::optional<Entry> entry = find(name))
    return *entry;
  return makeError(directory + ": no tensor named '" + name +
                   "' in the checkpoint");
}

std::vector<std::string> Checkpoint::getTensorNames() const {
  std::vector<std::string> names;
  names.reserve(index.size());
  for (const auto &entry : index)
    names.push_back(entry.first);
  return names;
}

//===----------------------------------------------------------------------===//
// SafetensorsWriter
//===----------------------------------------------------------------------===//

struct SafetensorsWriter::Impl {
  struct Declared {
    std::string name;
    moe_dtype dtype;
    std::vector<int64_t> shape;
    uint64_t byteSize;
  };

  std::string path;
  std::vector<Declared> tensors;
  llvm::StringSet<> names;
  std::map<std::string, std::string> metadata;
  /// A metadata key set after the header went out; reported by finish().
  std::optional<std::string> lateMetadataKey;
  uint64_t totalBytes = 0;

  /// Set once the header is written (by the first write() or finish()).
  std::string tempPath;
  int fd = -1;
  std::unique_ptr<llvm::raw_fd_ostream> os;
  uint64_t written = 0;
  bool finished = false;
  /// Set after an I/O failure or a failed finish(): the temporary file is
  /// gone or unusable, so every later call fails.
  bool failed = false;

  llvm::Error error(const llvm::Twine &message) const {
    return makeError(path + ": " + message);
  }

  /// The tensor holding data byte `offset` (the last one if past the end).
  const Declared *tensorAt(uint64_t offset) const {
    uint64_t begin = 0;
    for (const Declared &tensor : tensors) {
      if (offset < begin + tensor.byteSize)
        return &tensor;
      begin += tensor.byteSize;
    }
    return tensors.empty() ? nullptr : &tensors.back();
  }

  /// Reports (and clears, so the stream's destructor does not abort) an I/O
  /// error of the stream.
  llvm::Error checkStream(llvm::StringRef doing) {
    if (!os->has_error())
      return llvm::Error::success();
    std::error_code ec = os->error();
    os->clear_error();
    failed = true;
    return llvm::createStringError(ec, path + ": " + doing + " " + tempPath +
                                           ": " + ec.message());
  }

  /// Closes and deletes the temporary file, ignoring errors: this is cleanup
  /// after a failure, which has already been reported.
  void abandon() {
    if (os) {
      os->close();
      os->clear_error();
      os.reset();
    }
    if (!tempPath.empty())
      llvm::sys::fs::remove(tempPath);
    tempPath.clear();
  }

  llvm::Error start() {
    if (os)
      return llvm::Error::success();
    for (const auto &[key, value] : metadata)
      if (!llvm::json::isUTF8(key) || !llvm::json::isUTF8(value))
        return error("__metadata__ entry '" + key + "' is not valid UTF-8");

    // Tensors keep their declaration order so the data can be streamed in
    // that order; ordered_json preserves it.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
      nlohmann::ordered_json entries = nlohmann::ordered_json::object();
      for (const auto &[key, value] : metadata)
        entries[key] = value;
      header["__metadata__"] = std::move(entries);
    }
    uint64_t offset = 0;
    for (const Declared &tensor : tensors) {
      nlohmann::ordered_json entry = nlohmann::ordered_json::object();
      entry["dtype"] = getSafetensorsName(tensor.dtype).str();
      entry["shape"] = tensor.shape;
      entry["data_offsets"] =
          nlohmann::ordered_json::array({offset, offset + tensor.byteSize});
      header[tensor.name] = std::move(entry);
      offset += tensor.byteSize;
    }
    // Every string was checked to be UTF-8, so `replace` never fires; it only
    // keeps dump() from throwing.
    std::string text = header.dump(
        -1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    // Padding to a multiple of 8 lets readers that map the file see 8-byte
    // aligned data for every tensor whose offset is a multiple of 8.
    text.resize(llvm::alignTo(text.size(), 8), ' ');
    if (text.size() > kMaxSafetensorsHeaderBytes)
      return error("header of " + llvm::Twine(text.size()) +
                   " bytes exceeds the limit of " +
                   llvm::Twine(kMaxSafetensorsHeaderBytes));

    llvm::SmallString<256> temp;
    if (std::error_code ec =
            llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%%%", fd, temp))
      return llvm::createStringError(
          ec, path + ": cannot create a temporary file: " + ec.message());
    tempPath = temp.str().str();
    os = std::make_unique<llvm::raw_fd_ostream>(fd, /*shouldClose=*/true);
    char length[8];
    llvm::support::endian::write64le(length, text.size());
    os->write(length, sizeof(length));
    os->write(text.data(), text.size());
    if (llvm::Error error = checkStream("cannot write")) {
      abandon();
      return error;
    }
    return llvm::Error::success();
  }
};

SafetensorsWriter::SafetensorsWriter(std::string path)
    : impl(std::make_unique<Impl>()) {
  impl->path = std::move(path);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (!impl->finished)
    impl->abandon();
}

llvm::Error SafetensorsWriter::declare(llvm::StringRef name, moe_dtype dtype,
                                       llvm::ArrayRef<int64_t> shape) {
  std::string prefix = ("tensor '" + name + "': ").str();
  if (impl->os || impl->finished || impl->failed)
    return impl->error(prefix + "declared after data was written");
  if (name == "__metadata__")
    return impl->error(prefix + "the name is reserved for metadata");
  if (!llvm::json::isUTF8(name))
    return impl->error(prefix + "the name is not valid UTF-8");
  if (impl->names.contains(name))
    return impl->error(prefix + "declared twice");
  if (getByteSize(dtype) == 0)
    return impl->error(prefix + "invalid dtype " +
                       llvm::Twine(static_cast<int>(dtype)));
  for (int64_t dim : shape)
    if (dim < 0)
      return impl->error(prefix + "negative dimension in shape " +
                         formatShape(shape));
  std::optional<uint64_t> bytes = getTensorByteSize(dtype, shape);
  bool overflow = false;
  uint64_t total = 0;
  if (bytes)
    total = llvm::SaturatingAdd(impl->totalBytes, *bytes, &overflow);
  if (!bytes || overflow)
    return impl->error(prefix + "the byte size of shape " + formatShape(shape) +
                       " of " + formatDType(dtype) + " overflows 64 bits");
  impl->names.insert(name);
  impl->tensors.push_back(
      Impl::Declared{name.str(), dtype, shape.vec(), *bytes});
  impl->totalBytes = total;
  return llvm::Error::success();
}

void SafetensorsWriter::setMetadata(llvm::StringRef key,
                                    llvm::StringRef value) {
  // The header is already on disk once data flows; finish() reports the loss
  // rather than writing a file that silently lacks the entry.
  if (impl->os && !impl->lateMetadataKey)
    impl->lateMetadataKey = key.str();
  impl->metadata[key.str()] = value.str();
}

llvm::Error SafetensorsWriter::write(llvm::ArrayRef<uint8_t> bytes) {
  if (impl->finished)
    return impl->error("write after finish()");
  if (impl->failed)
    return impl->error("write after an earlier failure");
  uint64_t left = impl->totalBytes - impl->written;
  if (bytes.size() > left) {
    const Impl::Declared *last = impl->tensorAt(impl->written);
    std::string where = last ? "tensor '" + last->name + "': " : std::string();
    return impl->error(where + "write of " + llvm::Twine(bytes.size()) +
                       " bytes exceeds the " + llvm::Twine(left) +
                       " bytes left of the declared data");
  }
  if (llvm::Error error = impl->start())
    return error;
  impl->os->write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
  if (llvm::Error error = impl->checkStream("cannot write")) {
    impl->abandon();
    return error;
  }
  impl->written += bytes.size();
  return llvm::Error::success();
}

llvm::Error SafetensorsWriter::finish() {
  if (impl->finished)
    return impl->error("finish() called twice");
  if (impl->failed)
    return impl->error("finish() after an earlier failure");
  // Any failure from here on abandons the file: nothing may appear at `path`.
  auto fail = [&](llvm::Error error) {
    impl->failed = true;
    impl->abandon();
    return error;
  };
  if (impl->written != impl->totalBytes) {
    uint64_t begin = 0;
    for (const Impl::Declared &tensor : impl->tensors) {
      if (impl->written < begin + tensor.byteSize) {
        uint64_t have = impl->written > begin ? impl->written - begin : 0;
        return fail(impl->error(
            "tensor '" + tensor.name + "': only " + llvm::Twine(have) + " of " +
            llvm::Twine(tensor.byteSize) + " bytes were written"));
      }
      begin += tensor.byteSize;
    }
  }
  if (impl->lateMetadataKey)
    return fail(impl->error("metadata '" + *impl->lateMetadataKey +
                            "' was set after data was written"));
  if (llvm::Error error = impl->start())
    return fail(std::move(error));

  impl->os->flush();
  if (llvm::Error error = impl->checkStream("cannot write"))
    return fail(std::move(error));
  // Make the data durable before the rename publishes it, so a crash cannot
  // leave a complete-looking name over incomplete contents.
  if (::fsync(impl->fd) != 0) {
    std::error_code ec(errno, std::generic_category());
    return fail(llvm::createStringError(ec, impl->path + ": cannot sync " +
                                                impl->tempPath + ": " +
                                                ec.message()));
  }
  impl->os->close();
  if (llvm::Error error = impl->checkStream("cannot close"))
    return fail(std::move(error));
  impl->os.reset();
  if (std::error_code ec = llvm::sys::fs::rename(impl->tempPath, impl->path))
    return fail(llvm::createStringError(ec, impl->path + ": cannot rename " +
                                                impl->tempPath +
                                                " to it: " + ec.message()));
  impl->tempPath.clear();
  impl->finished = true;
  return llvm::Error::success();
}

llvm::Error SafetensorsWriter::writeFile(
    llvm::StringRef path, llvm::ArrayRef<Tensor> tensors,
    const std::map<std::string, std::string> &metadata) {
  SafetensorsWriter writer(path.str());
  for (const Tensor &tensor : tensors)
    if (llvm::Error error =
            writer.declare(tensor.name, tensor.dtype, tensor.shape))
      return error;
  for (const auto &[key, value] : metadata)
    writer.setMetadata(key, value);
  // Check every size first so a mismatch costs no I/O.
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t needed = writer.impl->tensors[i].byteSize;
    if (tensors[i].data.size() != needed)
      return makeError(
          path + ": tensor '" + tensors[i].name +
          "': " + llvm::Twine(tensors[i].data.size()) +
          " bytes of data but shape " + formatShape(tensors[i].shape) + " of " +
          formatDType(tensors[i].dtype) + " needs " + llvm::Twine(needed));
  }
  for (const Tensor &tensor : tensors)
    if (llvm::Error error = writer.write(tensor.data))
      return error;
  return writer.finish();
}

} // namespace moe
