//===- Safetensors.h - safetensors files and checkpoints --------*- C++ -*-===//
//
// Reading: a file is memory-mapped and its header checked against every rule of
// the format before any tensor is handed out; tensor data are zero-copy views
// into the mapping. Writing: tensors are declared first (so the header can be
// written up front), then their bytes are streamed in declaration order; the
// file appears under its final name only when complete (written to a temporary
// name, then renamed).
//
// Every error names the file and, where there is one, the tensor.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_WEIGHTS_SAFETENSORS_H
#define MOEC_LIB_WEIGHTS_SAFETENSORS_H

#include "lib/Weights/SafetensorsFormat.h"
#include "moe/dtype.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moe {

// kMaxSafetensorsHeaderBytes and TensorInfo come from SafetensorsFormat.h,
// which holds the format's rules in LLVM-free code shared with the runtime.

/// A memory-mapped safetensors file whose header passed every check.
class SafetensorsFile {
public:
  /// Opens and validates `path`. Checks: the file holds the 8-byte length; the
  /// header length is <= kMaxSafetensorsHeaderBytes and inside the file; the
  /// header is a UTF-8 JSON object of tensor entries (and an optional
  /// "__metadata__" object of strings); each entry has a known dtype, a shape
  /// of non-negative integers and integer data_offsets [begin, end] with begin
  /// <= end; end - begin == numel * dtype size (no overflow); sorted by begin,
  /// the tensors tile the data buffer from 0 with no hole or overlap, and the
  /// buffer ends exactly at the end of the file; no name appears twice.
  static llvm::Expected<std::unique_ptr<SafetensorsFile>>
  open(llvm::StringRef path);

  llvm::StringRef getPath() const { return path; }
  /// Tensors sorted by name, so listings are deterministic.
  llvm::ArrayRef<TensorInfo> getTensors() const { return tensors; }
  /// The tensor called `name`, or nullptr.
  const TensorInfo *find(llvm::StringRef name) const;
  /// The bytes of `tensor` (which must belong to this file): a view into the
  /// mapping, valid while this object lives. Not necessarily aligned.
  llvm::ArrayRef<uint8_t> getData(const TensorInfo &tensor) const;
  const std::map<std::string, std::string> &getMetadata() const {
    return metadata;
  }

private:
  SafetensorsFile() = default;
  std::string path;
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

/// A checkpoint directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists in its "weight_map". Shards are opened
/// (and fully validated) when the checkpoint is opened.
class Checkpoint {
public:
  /// Opens `directory`. Errors: no model.safetensors and no index; an index
  /// that is not JSON or lacks "weight_map"; a shard listed by the index that
  /// is missing or invalid; a shard path escaping the directory; a tensor the
  /// index maps to a shard that lacks it.
  static llvm::Expected<std::unique_ptr<Checkpoint>>
  open(llvm::StringRef directory);

  llvm::StringRef getDirectory() const { return directory; }
  /// The tensor called `name` and the file holding it, or nullptr.
  struct Entry {
    const SafetensorsFile *file;
    const TensorInfo *tensor;
  };
  std::optional<Entry> find(llvm::StringRef name) const;
  /// As find, but a missing tensor is an error naming it and the checkpoint.
  llvm::Expected<Entry> get(llvm::StringRef name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> getTensorNames() const;
  /// The tensor called `name` in the safetensors file at the absolute path
  /// `path` (data a pass derived, e.g. calibration states), opened once and
  /// kept open. Errors: the file cannot be opened or lacks the tensor.
  llvm::Expected<Entry> getExternal(llvm::StringRef path,
                                    llvm::StringRef name) const;

private:
  Checkpoint() = default;
  std::string directory;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>, std::less<>>
      externalFiles;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, Entry, std::less<>> index;
};

/// Writes a safetensors file: declare every tensor, then write their data in
/// declaration order, then finish(). Nothing is visible at `path` until
/// finish() succeeds; destroying an unfinished writer removes the temporary
/// file.
class SafetensorsWriter {
public:
  explicit SafetensorsWriter(std::string path);
  ~SafetensorsWriter();

  /// Declares a tensor. Errors: a duplicate name, an invalid dtype, a negative
  /// dimension, a size overflow, or a declaration after the first write.
  llvm::Error declare(llvm::StringRef name, moe_dtype dtype,
                      llvm::ArrayRef<int64_t> shape);
  void setMetadata(llvm::StringRef key, llvm::StringRef value);
  /// Appends bytes of the current tensor (tensors are filled in declaration
  /// order; a tensor may be written in several pieces). Errors: more bytes than
  /// declared, or an I/O failure.
  llvm::Error write(llvm::ArrayRef<uint8_t> bytes);
  /// Checks that every declared byte was written, flushes, and renames the
  /// temporary file to `path`.
  llvm::Error finish();

  /// Convenience: a whole file from in-memory tensors.
  struct Tensor {
    std::string name;
    moe_dtype dtype;
    std::vector<int64_t> shape;
    llvm::ArrayRef<uint8_t> data;
  };
  static llvm::Error
  writeFile(llvm::StringRef path, llvm::ArrayRef<Tensor> tensors,
            const std::map<std::string, std::string> &metadata = {});

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace moe

#endif // MOEC_LIB_WEIGHTS_SAFETENSORS_H
