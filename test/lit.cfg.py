# -*- Python -*-
# lit configuration of moec's regression tests.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "moec"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")

config.substitutions.append(("%moec_src_root", config.moec_src_root))
config.substitutions.append(("%examples", os.path.join(config.moec_src_root, "examples")))

llvm_config.with_system_environment(["HOME", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moec_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["moe-opt", "moe-translate"], tool_dirs)
