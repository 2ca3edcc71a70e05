#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PNG plot of quality against budget per selector from `butler eval -o FILE.json` results, for results merged
from several runs (`butler eval --plot` draws one run's rows). One panel per task: KL(dense || sparse) on a log
scale for the text (perplexity alone hides how far a selector moves from dense), accuracy for needle and
co-reference with dense as a dashed line. Needs gnuplot (pngcairo).

Usage: perf/plot_eval.py -o OUT.png RESULT.json [RESULT.json ...]
"""
import argparse
import json
import subprocess


# distinct colours, in the order the selectors first appear (oracle and tokenbutler come first in merged results)
COLORS = ["#7f7f7f", "#d62728", "#ff9896", "#1f77b4", "#aec7e8", "#2ca02c", "#98df8a", "#9467bd", "#c5b0d5",
          "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def panel(rows, task):
    selectors = list(dict.fromkeys(r["selector"] for r in rows if r["task"] == task))
    ppl = task == "ppl"
    key = "kl_dense_sparse" if ppl else "accuracy"
    lines = [f"set title '{task}'", "set ylabel '" + ("KL(dense || sparse), nats/token" if ppl else "accuracy") + "'",
             "set logscale y" if ppl else "unset logscale y", "set format y '%g'"]
    series, data = [], []
    for i, s in enumerate(selectors):
        pts = sorted((float(r["budget"].rstrip("%")), r[key]) for r in rows if r["task"] == task and r["selector"] == s)
        pts = [(x, y) for x, y in pts if not ppl or y > 0]  # a log axis cannot show 0
        if not pts:
            continue
        color = COLORS[i % len(COLORS)]
        series.append(f"'-' using 1:2 with linespoints lw 1.5 lc rgb '{color}' title '{s}'")
        data += [f"{x} {y}" for x, y in pts] + ["e"]
    if not ppl:
        dense = next(r["accuracy_dense"] for r in rows if r["task"] == task)
        series.append(f"{dense} with lines dashtype 2 lc 'black' title 'dense'")
    return "\n".join(lines + ["plot " + ", ".join(series)] + data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", required=True, help="the PNG to write")
    ap.add_argument("results", nargs="+", help="butler eval JSON files")
    a = ap.parse_args()
    rows, views, names = [], set(), []
    for path in a.results:
        with open(path) as f:
            d = json.load(f)
        views.add(d["view"])
        names.append(path.rsplit("/", 1)[-1])
        rows += d["rows"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    script = [f"set terminal pngcairo noenhanced size {480 * len(tasks)},480 font ',9'", f"set output '{a.out}'",
              f"set multiplot layout 1,{len(tasks)} title '{' / '.join(sorted(views))} view: {', '.join(names)}'",
              "set key outside bottom center horizontal font ',7'", "set grid", "set xlabel 'budget kept (%)'",
              "set xrange [*:*] reverse"]
    script += [panel(rows, t) for t in tasks] + ["unset multiplot"]
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)


if __name__ == "__main__":
    main()
