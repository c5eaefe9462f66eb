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
config.substitutions.append(("%mutate", "python3 " + os.path.join(utils, "mutate_checkpoint.py")))

llvm_config.with_system_environment(["HOME", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moec_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["moe-opt", "moe-translate", "moe-run"], tool_dirs)
