#!/usr/bin/env python3
"""Checks moe-mixed-precision's reports across budgets.

    check_mixed_precision.py BUDGET=MODULE.mlir [BUDGET=MODULE.mlir ...]

Each MODULE is the output of moe-mixed-precision at budget-bits=BUDGET (given in
increasing order). For every layer function it checks that the chosen widths respect the
budget (their mean, all experts being the same size, is at most BUDGET) and that a higher
budget never gives a larger objective (a larger budget only adds feasible choices, and the
solver is exact). Prints each layer's objectives. Standard library only.
"""

import re
import sys

REPORT = re.compile(r'func\.func @(\w+)\(.*?"moe\.report\.moe-mixed-precision" = \{'
                    r'bits = array<i64: ([0-9, ]+)>.*?objective = ([0-9.eE+-]+) : f64\}')


def reports(path):
    with open(path) as f:
        text = f.read()
    return {m.group(1): ([int(b) for b in m.group(2).split(",")], float(m.group(3)))
            for m in REPORT.finditer(text)}


def main():
    runs = []
    for arg in sys.argv[1:]:
        budget, path = arg.split("=", 1)
        runs.append((float(budget), reports(path)))
    failures = []
    layers = sorted(runs[0][1])
    if not layers:
        failures.append("no moe.report.moe-mixed-precision in %s" % sys.argv[1])
    for layer in layers:
        objectives = []
        for budget, found in runs:
            if layer not in found:
                failures.append("%s: no report at budget %g" % (layer, budget))
                continue
            bits, objective = found[layer]
            if sum(bits) > budget * len(bits):
                failures.append("%s: mean bits %g above budget %g" %
                                (layer, sum(bits) / len(bits), budget))
            objectives.append((budget, objective))
        print("%s: %s" % (layer, " ".join("%g:%.6g" % o for o in objectives)))
        for (b0, o0), (b1, o1) in zip(objectives, objectives[1:]):
            if o1 > o0:
                failures.append("%s: objective %.9g at budget %g above %.9g at %g" %
                                (layer, o1, b1, o0, b0))
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
