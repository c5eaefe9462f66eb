# -*- Python -*-
# lit configuration of moec's regression tests.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "moec"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "utils",
                   "golden"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")

config.substitutions.append(("%moec_src_root", config.moec_src_root))
config.substitutions.append(("%examples", os.path.join(config.moec_src_root, "examples")))
# Golden data from transformers (test/golden/README.md) and the standard-library-only Python
# helpers that check against it.
config.substitutions.append(("%golden", os.path.join(config.test_source_root, "golden")))
utils = os.path.join(config.test_source_root, "utils")
config.substitutions.append(("%compare", "python3 " + os.path.join(utils, "compare_safetensors.py")))
config.substitutions.append(("%list_tensors", "python3 " + os.path.join(utils, "list_tensors.py")))
config.substitutions.append(("%make_checkpoint", "python3 " + os.path.join(utils, "make_checkpoint.py")))
config.substitutions.append(("%make_input", "python3 " + os.path.join(utils, "make_input.py")))
config.substitutions.append(("%mutate", "python3 " + os.path.join(utils, "mutate_checkpoint.py")))

# The runtime's C test (test/runtime) and the fixture libraries it copies into the folders
# it writes; %fake_model_nohash comes first because %fake_model is a prefix of it.
runtime_bin = os.path.join(config.moec_obj_root, "test", "runtime")
config.substitutions.append(("%runtime_test", os.path.join(runtime_bin, "runtime_test")))
config.substitutions.append(("%fake_model_nohash",
                             os.path.join(runtime_bin, "libfake_model_nohash.so")))
config.substitutions.append(("%fake_model", os.path.join(runtime_bin, "libfake_model.so")))
# The CUDA backend's test, its fixture library and the test fake of the CUDA driver
# (libcuda.so.1, alone in its folder so that LD_LIBRARY_PATH can name the folder).
config.substitutions.append(("%cuda_runtime_test", os.path.join(runtime_bin, "cuda_runtime_test")))
config.substitutions.append(("%fake_cuda_model", os.path.join(runtime_bin, "libfake_cuda_model.so")))
config.substitutions.append(("%fake_cuda_driver_dir", os.path.join(runtime_bin, "fake_cuda")))
# The same fake without cuTensorMapEncodeTiled (a driver older than CUDA 12.0).
config.substitutions.append(("%fake_cuda_driver_old",
                             os.path.join(runtime_bin, "fake_cuda_old", "libcuda.so.1")))
config.substitutions.append(("%fake_cuda_driver",
                             os.path.join(runtime_bin, "fake_cuda", "libcuda.so.1")))

llvm_config.with_system_environment(["HOME", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moec_tools_dir, config.llvm_tools_dir]
# Debian's lit does not substitute `not` by default; take it from the LLVM tools.
llvm_config.add_tool_substitutions(["not"], [config.llvm_tools_dir])
llvm_config.add_tool_substitutions(["moe-opt", "moe-translate", "moe-run", "moe-compile"],
                                   tool_dirs)

# CUDA kernels are checked by assembling their PTX when the toolkit's ptxas is installed
# (issue 5: CI has no GPU; "ptxas accepts it when /usr/local/cuda/bin/ptxas exists").
ptxas = os.environ.get("PTXAS", "/usr/local/cuda/bin/ptxas")
if os.access(ptxas, os.X_OK):
    config.available_features.add("ptxas")
config.substitutions.append(("%ptxas_all", "sh " + os.path.join(utils, "ptxas_all.sh")))
