//===- Safetensors.cpp - safetensors files and checkpoints ----------------===//
//
// The format's rules live in SafetensorsFormat.cpp (LLVM-free, shared with the
// runtime); this file maps files, opens checkpoints and writes files. The
// reader treats every file as hostile: nothing is handed out until the whole
// header has been validated against the file.
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
#include <unistd.h>

using nlohmann::json;

namespace moe {
namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  return moe::formatShape(shape.data(), shape.size());
}

std::string formatDType(moe_dtype dtype) {
  return getSafetensorsName(dtype).str();
}

/// Maps (or reads) `path` as bytes; the error names the file.
llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>>
openBytes(llvm::StringRef path) {
  auto bufferOrErr =
      llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                  /*RequiresNullTerminator=*/false);
  if (!bufferOrErr)
    return llvm::createStringError(
        bufferOrErr.getError(),
        path + ": cannot open: " + bufferOrErr.getError().message());
  return std::move(*bufferOrErr);
}

/// Reads `path` (an index or other small JSON file) and parses it strictly.
llvm::Expected<json> readJSONFile(llvm::StringRef path) {
  auto bufferOrErr = openBytes(path);
  if (!bufferOrErr)
    return bufferOrErr.takeError();
  llvm::StringRef text = (*bufferOrErr)->getBuffer();
  // An index names each tensor once, like the headers it indexes, so the same
  // bound keeps a hostile index from exhausting memory in the DOM parser.
  if (text.size() > kMaxSafetensorsHeaderBytes)
    return makeError(path + ": " + llvm::Twine(text.size()) +
                     " bytes exceed the limit of " +
                     llvm::Twine(kMaxSafetensorsHeaderBytes));
  std::string syntaxError;
  std::optional<JSONDuplicateKey> duplicate;
  json value;
  if (!parseStrictJSON(text, value, syntaxError, duplicate))
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

  auto bufferOrErr = openBytes(path);
  if (!bufferOrErr)
    return bufferOrErr.takeError();
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path = path.str();
  file->buffer = std::move(*bufferOrErr);
  llvm::StringRef contents = file->buffer->getBuffer();

  SafetensorsHeader header;
  std::string error;
  if (!parseSafetensorsHeader(
          reinterpret_cast<const uint8_t *>(contents.data()), contents.size(),
          path, header, error))
    return makeError(error);
  file->tensors = std::move(header.tensors);
  file->metadata = std::move(header.metadata);
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
    if (!isPlainFileName(name))
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

llvm::Expected<Checkpoint::Entry>
Checkpoint::getExternal(llvm::StringRef path, llvm::StringRef name) const {
  auto it = externalFiles.find(path);
  if (it == externalFiles.end()) {
    auto file = SafetensorsFile::open(path);
    if (!file)
      return file.takeError();
    it = externalFiles.emplace(path.str(), std::move(*file)).first;
  }
  const SafetensorsFile &file = *it->second;
  if (const TensorInfo *tensor = file.find(name))
    return Entry{&file, tensor};
  return makeError(path + ": no tensor named '" + name + "'");
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
