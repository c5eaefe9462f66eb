//===- HFConfig.h - typed access to a Hugging Face config.json --*- C++ -*-===//
//
// Every getter names the key when the value is missing or of the wrong type,
// so a malformed config.json is reported precisely instead of crashing the
// importer.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_IMPORT_HFCONFIG_H
#define MOEC_LIB_IMPORT_HFCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace moe {

class HFConfig {
public:
  /// Reads and parses `path`; errors name the file.
  static llvm::Expected<HFConfig> load(llvm::StringRef path);
  /// A view of the object under `key` (Llama-4's "text_config"), or this config
  /// if absent.
  HFConfig section(llvm::StringRef key) const;

  llvm::StringRef getPath() const { return path; }
  bool has(llvm::StringRef key) const;

  llvm::Expected<int64_t> getInt(llvm::StringRef key) const;
  llvm::Expected<int64_t> getInt(llvm::StringRef key, int64_t fallback) const;
  llvm::Expected<double> getDouble(llvm::StringRef key) const;
  llvm::Expected<double> getDouble(llvm::StringRef key, double fallback) const;
  llvm::Expected<bool> getBool(llvm::StringRef key, bool fallback) const;
  llvm::Expected<std::string> getString(llvm::StringRef key) const;
  llvm::Expected<std::string> getString(llvm::StringRef key,
                                        llvm::StringRef fallback) const;
  /// An array of integers (absent or null: empty).
  llvm::Expected<std::vector<int64_t>> getIntList(llvm::StringRef key) const;
  /// The object under `key`, or nullopt when absent or null.
  llvm::Expected<std::optional<HFConfig>> getObject(llvm::StringRef key) const;

  /// An error about this config (callers report it at a location naming the
  /// file).
  llvm::Error error(const llvm::Twine &message) const;

private:
  HFConfig(std::string path, nlohmann::json json, std::string scope)
      : path(std::move(path)), json(std::move(json)), scope(std::move(scope)) {}
  const nlohmann::json *lookup(llvm::StringRef key) const;
  llvm::Error typeError(llvm::StringRef key, llvm::StringRef expected) const;

  std::string path;
  nlohmann::json json;
  /// "text_config." for a section, to name keys fully in messages.
  std::string scope;
};

} // namespace moe

#endif // MOEC_LIB_IMPORT_HFCONFIG_H
