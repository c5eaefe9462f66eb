# -*- Python -*-
# The C++ unit tests, run by lit's GoogleTest format so that one lit run covers every suite.

import os

import lit.formats

config.name = "moec-unit"
config.suffixes = []
config.test_source_root = os.path.join(config.moec_obj_root, "test", "unit")
config.test_exec_root = config.test_source_root
config.test_format = lit.formats.GoogleTest(".", "Tests")
