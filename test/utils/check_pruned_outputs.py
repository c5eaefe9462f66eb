#!/usr/bin/env python3
"""Checks a pruned layer (moe-prune-experts) against the original on the same input.

    check_pruned_outputs.py ORIGINAL PRUNED (--kept 0,2,3,5 | --kept-from MODULE --function F)
                            --mode exact|rescaled [--tolerance 1e-12] [--min-tokens N]

ORIGINAL and PRUNED are moe-run outputs (hidden_states, topk_ids, topk_weights). --kept lists
the original index of each expert the pruned layer has, in its order; --kept-from reads it
from the moe.kept_experts of function F's moe.layer in the pruned module.
Only tokens whose original experts all survive ("surviving tokens") are checked; at least
--min-tokens of them must exist. For each surviving token the pruned layer must select the
same experts (its ids mapped back through --kept), and:

  exact     the same routing weights and output: relative error per token <= TOL (routers
            whose selected weights depend only on the selected logits);
  rescaled  routing weights and output both multiplied by one factor alpha > 1 per token,
            to within TOL relative (softmax over all experts without renormalization:
            alpha = Z_all / Z_kept, the removed experts left the denominator).

Prints the number of surviving tokens and the largest error (and alpha range). Standard
library only.
"""

import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_safetensors import read_safetensors  # noqa: E402


def rows(tensors, name):
    shape, values = tensors[name]
    width = shape[1]
    return [values[t * width:(t + 1) * width] for t in range(shape[0])]


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def relative(actual, expected):
    diff = norm([a - e for a, e in zip(actual, expected)])
    scale = norm(expected)
    return diff / scale if scale > 0 else diff


def kept_from_module(path, function):
    with open(path) as f:
        text = f.read()
    start = text.find("func.func @%s(" % function)
    if start < 0:
        sys.exit("check_pruned_outputs.py: no function @%s in %s" % (function, path))
    match = re.compile(r"moe\.kept_experts = array<i64: ([0-9, ]+)>").search(text, start)
    if not match:
        sys.exit("check_pruned_outputs.py: no moe.kept_experts after @%s" % function)
    return [int(e) for e in match.group(1).split(",")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("original")
    parser.add_argument("pruned")
    parser.add_argument("--kept")
    parser.add_argument("--kept-from")
    parser.add_argument("--function")
    parser.add_argument("--mode", choices=["exact", "rescaled"], required=True)
    parser.add_argument("--tolerance", type=float, default=1e-12)
    parser.add_argument("--min-tokens", type=int, default=1)
    args = parser.parse_args()

    if args.kept_from:
        kept = kept_from_module(args.kept_from, args.function)
    else:
        kept = [int(e) for e in args.kept.split(",")]
    original = read_safetensors(args.original)
    pruned = read_safetensors(args.pruned)
    ids, pruned_ids = rows(original, "topk_ids"), rows(pruned, "topk_ids")
    weights, pruned_weights = rows(original, "topk_weights"), rows(pruned, "topk_weights")
    out, pruned_out = rows(original, "hidden_states"), rows(pruned, "hidden_states")

    surviving, worst, alphas, failures = 0, 0.0, [], []
    for t, token_ids in enumerate(ids):
        if not all(e in kept for e in token_ids):
            continue
        surviving += 1
        mapped = [kept[e] for e in pruned_ids[t]]
        if sorted(mapped) != sorted(token_ids):
            failures.append("token %d: experts %s became %s" % (t, token_ids, mapped))
            continue
        # Slots compared by original expert id.
        want = [w for _, w in sorted(zip(token_ids, weights[t]))]
        got = [w for _, w in sorted(zip(mapped, pruned_weights[t]))]
        if args.mode == "exact":
            error = max(relative(got, want), relative(pruned_out[t], out[t]))
        else:
            alpha = sum(g / w for g, w in zip(got, want)) / len(want)
            alphas.append(alpha)
            scaled_out = [alpha * x for x in out[t]]
            error = max(relative(got, [alpha * w for w in want]),
                        relative(pruned_out[t], scaled_out))
            if not alpha > 1.0 + 1e-6:
                failures.append("token %d: alpha %.9g is not above 1" % (t, alpha))
        worst = max(worst, error)
        if error > args.tolerance:
            failures.append("token %d: relative error %.3e above %.1e" %
                            (t, error, args.tolerance))

    line = "kept=%s surviving_tokens=%d/%d max_rel_err=%.3e" % (
        ",".join(map(str, kept)), surviving, len(ids), worst)
    if alphas:
        line += " alpha_min=%.6f alpha_max=%.6f" % (min(alphas), max(alphas))
    print(line)
    if surviving < args.min_tokens:
        failures.append("only %d surviving tokens, fewer than %d" %
                        (surviving, args.min_tokens))
    for failure in failures[:10]:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
