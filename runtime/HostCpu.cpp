//===- HostCpu.cpp - does this machine have a library's CPU features ------===//

#include "runtime/HostCpu.h"

namespace moe::runtime {
namespace {

#if defined(__x86_64__) || defined(__i386__)
/// Whether the host has LLVM feature `name`; true for names not in the table.
/// __builtin_cpu_supports wants a literal, hence the macro. (No
/// __builtin_cpu_init: the compiler runtime's constructor has run by the time
/// anyone opens a model, and calling it from several threads would race.)
bool hostHas(std::string_view name) {
#define MOE_FEATURE(str)                                                       \
  if (name == str)                                                             \
    return __builtin_cpu_supports(str);
  MOE_FEATURE("popcnt")
  MOE_FEATURE("sse3")
  MOE_FEATURE("ssse3")
  MOE_FEATURE("sse4.1")
  MOE_FEATURE("sse4.2")
  MOE_FEATURE("avx")
  MOE_FEATURE("avx2")
  MOE_FEATURE("fma")
  MOE_FEATURE("f16c")
  MOE_FEATURE("bmi")
  MOE_FEATURE("bmi2")
  MOE_FEATURE("avxvnni")
  MOE_FEATURE("avx512f")
  MOE_FEATURE("avx512bw")
  MOE_FEATURE("avx512dq")
  MOE_FEATURE("avx512vl")
  MOE_FEATURE("avx512cd")
  MOE_FEATURE("avx512vnni")
  MOE_FEATURE("avx512bf16")
  MOE_FEATURE("avx512fp16")
  MOE_FEATURE("avx512vbmi")
  MOE_FEATURE("avx512vbmi2")
  MOE_FEATURE("avx512ifma")
  MOE_FEATURE("avx512bitalg")
  MOE_FEATURE("avx512vpopcntdq")
#undef MOE_FEATURE
  return true;
}
#else
bool hostHas(std::string_view) { return true; }
#endif

} // namespace

std::string findMissingCpuFeature(std::string_view features) {
  while (!features.empty()) {
    size_t comma = features.find(',');
    std::string_view item = features.substr(0, comma);
    features = comma == std::string_view::npos ? std::string_view()
                                               : features.substr(comma + 1);
    if (item.size() > 1 && item.front() == '+' && !hostHas(item.substr(1)))
      return std::string(item.substr(1));
  }
  return std::string();
}

} // namespace moe::runtime
