"""check_report.py REPORT.json [checks]: checks moe-compile's per-layer report (report.json).

Every layer (or only --layer N) must satisfy every check given:
  --passes A,B,...     a section per pass named (moe-quantize-experts, ...) is present
  --no-section A,...   no section of that name
  --bytes-after N      weight_bytes_after == N
  --ratio-below R      weight_bytes_after / weight_bytes_before < R (R = 1: it shrank)
  --max-rel-err E      rel_err <= E on the calibration states
  --min-rel-err E      rel_err >= E (the transformation changed something)
  --min-agreement A    routing_agreement >= A
  --max-agreement A    routing_agreement <= A
  --same-as OTHER      same weight_bytes_after, rel_err (to 1e-12) and routing_agreement as
                       the same layer of OTHER (a report of the same passes in another order)
Prints one line per layer: layer, bytes before -> after, rel_err, routing_agreement."""
import argparse
import json
import sys

p = argparse.ArgumentParser()
p.add_argument("report")
p.add_argument("--layer", type=int)
p.add_argument("--passes", default="")
p.add_argument("--no-section", default="")
p.add_argument("--bytes-after", type=int)
p.add_argument("--ratio-below", type=float)
p.add_argument("--max-rel-err", type=float)
p.add_argument("--min-rel-err", type=float)
p.add_argument("--min-agreement", type=float)
p.add_argument("--max-agreement", type=float)
p.add_argument("--same-as")
a = p.parse_args()

layers = json.load(open(a.report))["layers"]
other = {}
if a.same_as:
    other = {l["layer"]: l for l in json.load(open(a.same_as))["layers"]}
failed = []
checked = 0
for l in layers:
    n = l["layer"]
    if a.layer is not None and n != a.layer:
        continue
    checked += 1
    before, after = l["weight_bytes_before"], l["weight_bytes_after"]
    err, agree = l.get("rel_err"), l.get("routing_agreement")
    print("layer %d: %d -> %d bytes, rel_err=%s, routing_agreement=%s"
          % (n, before, after, "%.3e" % err if err is not None else "-",
             "%.4f" % agree if agree is not None else "-"))

    def need(ok, what):
        if not ok:
            failed.append("layer %d: %s" % (n, what))

    for name in filter(None, a.passes.split(",")):
        need(name in l, "no section %s" % name)
    for name in filter(None, a.no_section.split(",")):
        need(name not in l, "unexpected section %s" % name)
    if a.bytes_after is not None:
        need(after == a.bytes_after, "weight_bytes_after %d != %d" % (after, a.bytes_after))
    if a.ratio_below is not None:
        need(after < a.ratio_below * before,
             "weight_bytes_after %d not below %g x %d" % (after, a.ratio_below, before))
    for bound, cmp, what in ((a.max_rel_err, lambda v, b: v <= b, "rel_err above"),
                             (a.min_rel_err, lambda v, b: v >= b, "rel_err below"),
                             (a.max_agreement, lambda v, b: v <= b, "routing_agreement above"),
                             (a.min_agreement, lambda v, b: v >= b, "routing_agreement below")):
        if bound is None:
            continue
        value = err if "rel_err" in what else agree
        need(value is not None and cmp(value, bound), "%s %s: %s" % (what, bound, value))
    if a.same_as:
        o = other.get(n)
        need(o is not None, "not in %s" % a.same_as)
        if o is not None:
            need(o["weight_bytes_after"] == after, "bytes differ from %s" % a.same_as)
            need(abs(o["rel_err"] - err) <= 1e-12, "rel_err differs: %r vs %r" % (err, o["rel_err"]))
            need(o["routing_agreement"] == agree, "routing_agreement differs from %s" % a.same_as)
if not checked:
    failed.append("no layer checked")
for f in failed:
    print("FAIL " + f)
if failed:
    sys.exit(1)
print("report ok: %d layers" % checked)
