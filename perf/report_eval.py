#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Markdown tables from `butler eval -o FILE.json` results: one table per task and measure, selectors as rows,
budgets as columns; the best non-oracle selector of each budget in bold (for the perplexity change: the one
closest to dense).

Usage: perf/report_eval.py RESULT.json [RESULT.json ...] > table.md
"""
import json
import sys

MEASURES = {
    "ppl": [("ppl", "perplexity (lower is better)", "{:.3f}", min),
            # closest to dense: a sparse run whose perplexity falls below dense's has moved away from the model
            ("ppl_delta_pct", "perplexity change vs dense, % (bold: closest to 0)", "{:+.2f}",
             lambda vals: min(vals, key=abs)),
            ("kl_dense_sparse", "KL(dense || sparse), nats per token", "{:.4f}", min),
            ("top1_agreement", "top-1 agreement with dense", "{:.3f}", max)],
    "task": [("accuracy", "accuracy (dense: {dense})", "{:.3f}", max),
             ("kl_dense_sparse", "KL(dense || sparse) on the answer tokens", "{:.4f}", min)],
}


def table(rows, task, key, title, fmt, best_of):
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    cell = {(r["selector"], r["budget"]): r.get(key) for r in rows}
    best = {}
    for b in budgets:
        vals = [cell.get((s, b)) for s in selectors if s not in ("oracle", "dense")]
        vals = [v for v in vals if v is not None]
        best[b] = best_of(vals) if vals else None
    dense = ""
    if task != "ppl":
        dense = "{:.3f}".format(rows[0]["accuracy_dense"])
    out = ["", f"**{task}: {title.format(dense=dense)}**", "",
           "| selector | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for s in selectors:
        cells = []
        for b in budgets:
            v = cell.get((s, b))
            if v is None:
                cells.append("-")
                continue
            text = fmt.format(v)
            cells.append(f"**{text}**" if s not in ("oracle", "dense") and v == best[b] else text)
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            d = json.load(f)
        print(f"### {path}: view `{d['view']}`, ctx {d['ctx']} x {d['chunks']} window(s), {d['samples']} samples per "
              f"task, interval {d['interval']}, neighbours {d['neighbours']}")
        dist = d.get("target_distance_tokens") or {}
        for t, v in dist.items():
            print(f"- {t}: the answer lies {v['min']}..{v['max']} tokens before the question")
        tasks = list(dict.fromkeys(r["task"] for r in d["rows"]))
        for task in tasks:
            rows = [r for r in d["rows"] if r["task"] == task]
            for key, title, fmt, best_of in MEASURES["ppl" if task == "ppl" else "task"]:
                print(table(rows, task, key, title, fmt, best_of))
        print()


if __name__ == "__main__":
    main()
