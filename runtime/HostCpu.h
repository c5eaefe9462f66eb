//===- HostCpu.h - does this machine have a library's CPU features --*- C++
//-*-===//

#ifndef MOEC_RUNTIME_HOSTCPU_H
#define MOEC_RUNTIME_HOSTCPU_H

#include <string>
#include <string_view>

namespace moe::runtime {

/// The first feature that `features` (an LLVM feature string as in
/// manifest.json's "cpu_features": "+avx2,+fma,-avx512f,...") requires and this
/// machine lacks, or "" if there is none. Only features the runtime knows how
/// to test are checked: code compiled for x86-64 features this machine lacks
/// would die of SIGILL instead of failing cleanly. Features of other
/// architectures, and ones it cannot test, are taken as present.
std::string findMissingCpuFeature(std::string_view features);

} // namespace moe::runtime

#endif // MOEC_RUNTIME_HOSTCPU_H
