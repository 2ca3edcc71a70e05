#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The decode-view table of perf/eval_selectors.sh runs: selectors as rows, budgets as columns, for perplexity
change vs dense and top-1 agreement with dense (the best non-oracle selector of each budget in bold), plus a JSON
file with one row per (selector, budget).

Inputs are JSONL files written by perf/eval_selectors.sh (one `butler perplexity --json` line per run) and,
optionally, earlier JSON files of this script (their rows are taken over). The dense reference is the run of the
`dense` selector (its perplexity equals the plain runtime's; issue 11 tests that).

Usage: perf/report_selectors.py --json OUT.json [--meta KEY=VALUE ...] IN.jsonl|IN.json ... > table.md
"""
import argparse
import json


def rows_of(path):
    with open(path) as f:
        text = f.read()
    try:
        d = json.loads(text)
        if isinstance(d, dict) and "rows" in d:
            return [dict(r, commit=r.get("commit", d.get("commit"))) for r in d["rows"]]
    except json.JSONDecodeError:
        pass
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        off = r.get("offload") or {}
        out.append({
            "selector": r["selector_arg"],
            "budget": r["budget_arg"],
            "attn": off.get("attn", "sparse"),
            "ppl": r["ppl"],
            "top1_agreement": r.get("top1_agreement"),
            "slots_per_head": off.get("slots_per_head"),
            "mib_copied": off.get("bytes_copied", 0) / 2**20,
            "hit_rate": off.get("hit_rate"),
            "seconds": r.get("seconds"),
        })
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    rows = []
    for p in a.inputs:
        rows += rows_of(p)
    dense = [r for r in rows if r["selector"] == "dense"]
    if not dense:
        raise SystemExit("no dense run among the inputs")
    dense_ppl = dense[0]["ppl"]
    for r in rows:
        r["ppl_delta_pct"] = 100.0 * (r["ppl"] / dense_ppl - 1.0)
    meta = dict(kv.split("=", 1) for kv in a.meta)
    with open(a.json, "w") as f:
        json.dump(dict(meta, dense_ppl=dense_ppl, rows=rows), f, indent=1)

    sparse = [r for r in rows if r["selector"] != "dense" and r.get("attn", "sparse") == "sparse"]
    budgets = sorted(dict.fromkeys(r["budget"] for r in sparse), key=lambda b: float(b.rstrip("%")))
    order = ["oracle", "tokenbutler", "tokenbutler-s12", "tokenbutler-s9", "tokenbutler-s10", "tokenbutler-s11", "tokenbutler-s9d", "tokenbutler-s7", "tokenbutler-s8", "tokenbutler-s6", "tokenbutler-s5", "tokenbutler-s4", "tokenbutler-s3", "tokenbutler-1k", "tokenbutler-4k", "quest", "quest-tb", "snapkv", "snapkv-tb", "h2o", "h2o-tb", "streamingllm"]
    selectors = [s for s in order if any(r["selector"] == s for r in sparse)]
    selectors += sorted({r["selector"] for r in sparse} - set(selectors))
    cell = {(r["selector"], r["budget"]): r for r in sparse}
    print(f"dense perplexity {dense_ppl:.4f}")
    for key, title, fmt, better in (("ppl_delta_pct", "perplexity change vs dense, %", "{:+.2f}", min),
                                    ("top1_agreement", "top-1 agreement with dense", "{:.3f}", max),
                                    ("ppl", "perplexity", "{:.4f}", min)):
        print(f"\n**{title}**\n")
        print("| selector | " + " | ".join(budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        best = {}
        for b in budgets:
            vals = [cell[(s, b)][key] for s in selectors if s != "oracle" and (s, b) in cell]
            best[b] = better(vals) if vals else None
        for s in selectors:
            cells = []
            for b in budgets:
                r = cell.get((s, b))
                if r is None or r.get(key) is None:
                    cells.append("-")
                    continue
                t = fmt.format(r[key])
                cells.append(f"**{t}**" if s != "oracle" and r[key] == best[b] else t)
            print(f"| {s} | " + " | ".join(cells) + " |")
    exact = [r for r in rows if r.get("attn") == "exact"]
    for r in exact:
        print(f"\n`--attn exact` ({r['selector']}, budget {r['budget']}): perplexity {r['ppl']:.6f}, "
              f"{r['ppl_delta_pct']:+.5f}% vs dense, top-1 agreement {r['top1_agreement']:.4f}")


if __name__ == "__main__":
    main()
