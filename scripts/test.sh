#!/usr/bin/env bash
# Builds moec and runs every test suite (lit regression tests and the GoogleTest unit tests,
# both through lit), then prints one line: "N passed, M failed". Exits non-zero when any test
# fails, is unsupported or is skipped: a skipped test counts as failed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh

lit=/usr/lib/llvm-22/bin/lit
results=build/test-results.json
rm -f "$results"
status=0
"$lit" -sv --output "$results" build/test build/test/unit || status=$?

python3 - "$results" <<'PY'
import json, sys
try:
    with open(sys.argv[1]) as f:
        tests = json.load(f)["tests"]
except (OSError, ValueError, KeyError) as error:
    print(f"could not read lit results: {error}")
    print("0 passed, 1 failed")
    sys.exit(1)
passed = sum(1 for t in tests if t["code"] in ("PASS", "XFAIL"))
failed = len(tests) - passed
for t in tests:
    if t["code"] not in ("PASS", "XFAIL"):
        print(f"  {t['code']}: {t['name']}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not tests else 0)
PY
py_status=$?
[ "$status" -eq 0 ] && [ "$py_status" -eq 0 ]
