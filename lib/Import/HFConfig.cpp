//===- HFConfig.cpp - typed access to a Hugging Face config.json ----------===//

#include "lib/Import/HFConfig.h"

#include "llvm/Support/MemoryBuffer.h"

#include <cmath>

using namespace moe;

llvm::Expected<HFConfig> HFConfig::load(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return llvm::createStringError(buffer.getError(), "%s: cannot read: %s",
                                   path.str().c_str(),
                                   buffer.getError().message().c_str());
  nlohmann::json json = nlohmann::json::parse(
      (*buffer)->getBuffer().begin(), (*buffer)->getBuffer().end(), nullptr,
      /*allow_exceptions=*/false);
  if (json.is_discarded())
    return llvm::createStringError("%s: not valid JSON", path.str().c_str());
  if (!json.is_object())
    return llvm::createStringError("%s: the top level must be a JSON object",
                                   path.str().c_str());
  return HFConfig(path.str(), std::move(json), "");
}

HFConfig HFConfig::section(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value || !value->is_object())
    return *this;
  return HFConfig(path, *value, scope + key.str() + ".");
}

const nlohmann::json *HFConfig::lookup(llvm::StringRef key) const {
  auto it = json.find(key.str());
  if (it == json.end() || it->is_null())
    return nullptr;
  return &*it;
}

bool HFConfig::has(llvm::StringRef key) const { return lookup(key) != nullptr; }

llvm::Error HFConfig::error(const llvm::Twine &message) const {
  // The importer reports these at a location naming the file, so the text does
  // not repeat the path.
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message.str());
}

llvm::Error HFConfig::typeError(llvm::StringRef key,
                                llvm::StringRef expected) const {
  const nlohmann::json *value = lookup(key);
  if (!value)
    return error("missing '" + scope + key.str() + "'");
  return error("'" + scope + key.str() + "' must be " + expected.str() +
               ", got " + value->dump());
}

llvm::Expected<int64_t> HFConfig::getInt(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value || !value->is_number_integer())
    return typeError(key, "an integer");
  return value->get<int64_t>();
}

llvm::Expected<int64_t> HFConfig::getInt(llvm::StringRef key,
                                         int64_t fallback) const {
  return has(key) ? getInt(key) : fallback;
}

llvm::Expected<double> HFConfig::getDouble(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value || !value->is_number() || !std::isfinite(value->get<double>()))
    return typeError(key, "a finite number");
  return value->get<double>();
}

llvm::Expected<double> HFConfig::getDouble(llvm::StringRef key,
                                           double fallback) const {
  return has(key) ? getDouble(key) : fallback;
}

llvm::Expected<bool> HFConfig::getBool(llvm::StringRef key,
                                       bool fallback) const {
  const nlohmann::json *value = lookup(key);
  if (!value)
    return fallback;
  if (!value->is_boolean())
    return typeError(key, "true or false");
  return value->get<bool>();
}

llvm::Expected<std::string> HFConfig::getString(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value || !value->is_string())
    return typeError(key, "a string");
  return value->get<std::string>();
}

llvm::Expected<std::string>
HFConfig::getString(llvm::StringRef key, llvm::StringRef fallback) const {
  return has(key) ? getString(key) : fallback.str();
}

llvm::Expected<std::vector<int64_t>>
HFConfig::getIntList(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value)
    return std::vector<int64_t>();
  if (!value->is_array())
    return typeError(key, "a list of integers");
  std::vector<int64_t> result;
  for (const nlohmann::json &item : *value) {
    if (!item.is_number_integer())
      return typeError(key, "a list of integers");
    result.push_back(item.get<int64_t>());
  }
  return result;
}

llvm::Expected<std::optional<HFConfig>>
HFConfig::getObject(llvm::StringRef key) const {
  const nlohmann::json *value = lookup(key);
  if (!value)
    return std::optional<HFConfig>();
  if (!value->is_object())
    return typeError(key, "an object");
  return std::optional<HFConfig>(
      HFConfig(path, *value, scope + key.str() + "."));
}
