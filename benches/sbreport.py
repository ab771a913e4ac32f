#!/usr/bin/env python3
"""Parse sysbench output and print the benchmark tables for benches/run.sh.

Standard library only.

  sbreport.py parse SYSBENCH_OUTPUT
      One tab-separated line: queries qps p50_ms p99_ms sysbench_p99_ms
      errors reconnects max_ms spread. p50 and p99 come from the latency histogram that
      `sysbench --histogram=on` prints (the same histogram sysbench uses for
      its own percentile, so the figures are consistent); sysbench_p99 is
      the figure sysbench printed itself with --percentile=99, kept as a
      cross-check of the histogram reading. max_ms is sysbench's highest
      query latency; spread is the standard deviation of the events each
      client thread ran over their mean ("Threads fairness"): near 0 when
      every client gets its share of the server, large when a few clients
      do the work and the others wait. Exits 1 if the output holds no
      result.

  sbreport.py table RUNS_TSV CLK_TCK
      The per-(threads, ps-mode) tables and the summary, from the run log
      that run.sh writes (one line per sysbench run, see RUN_COLUMNS). With
      several rounds, each figure is the median over the rounds. When the
      run has silo-nolimits (silo with every plan limit "unlimited"), each
      table and a "Limits on vs off" block give silo/silo-nolimits of QPS
      and of both CPU figures per query: what the limit checks cost. When
      it has silo-scraped (silo's twin whose /metrics is fetched every
      BENCH_SCRAPE_INTERVAL s while it is measured), a "Metrics scraped vs
      not" block gives silo-scraped/silo likewise: what serving scrapes
      costs under load.

  sbreport.py many MANY_TSV CLK_TCK
      The many-clients tables (direct vs silo with one client count, see
      MANY_COLUMNS) and their summary: the same figures, plus the
      connections open on mariadbd during the runs (the highest sample over
      the rounds, and the median of the runs' median samples).
"""

import re
import statistics
import sys

RUN_COLUMNS = [
    "round", "threads", "ps", "target", "rc", "queries", "qps", "p50", "p99",
    "sb_p99", "errors", "proxy_ticks", "mdb_ticks",
]
TARGETS = ["direct", "haproxy", "silo", "silo-nolimits", "silo-scraped"]
MANY_COLUMNS = RUN_COLUMNS + ["conns_before", "conns_max", "conns_median", "samples",
                              "max_ms", "spread"]
MANY_TARGETS = ["direct", "silo"]


def percentile_from_histogram(buckets, pct):
    """buckets: [(value_ms, count)] in ascending value order. Returns the
    value of the bucket holding the pct-th percentile (sysbench's own
    definition: the first bucket at which the cumulative count reaches
    pct% of the total)."""
    total = sum(c for _, c in buckets)
    if total == 0:
        return None
    threshold = total * pct / 100.0
    cumulative = 0
    for value, count in buckets:
        cumulative += count
        if cumulative >= threshold:
            return value
    return buckets[-1][0]


def parse_sysbench(text):
    buckets = []
    in_hist = False
    for line in text.splitlines():
        if line.startswith("Latency histogram"):
            in_hist = True
            continue
        if not in_hist or "distribution" in line:
            continue
        m = re.match(r"^\s*([0-9.]+)\s*\|[* ]*?\s*(\d+)\s*$", line)
        if m:
            buckets.append((float(m.group(1)), int(m.group(2))))
        elif buckets:
            break  # the first non-bucket line after the buckets ends it
    m_q = re.search(r"^\s*queries:\s+(\d+)\s+\(([0-9.]+) per sec\.\)", text, re.M)
    if not m_q:
        return None
    m_p = re.search(r"^\s*\d+th percentile:\s+([0-9.]+)", text, re.M)
    m_e = re.search(r"^\s*ignored errors:\s+(\d+)", text, re.M)
    m_r = re.search(r"^\s*reconnects:\s+(\d+)", text, re.M)
    m_max = re.search(r"^\s*max:\s+([0-9.]+)", text, re.M)
    m_f = re.search(r"^\s*events \(avg/stddev\):\s+([0-9.]+)/([0-9.]+)", text, re.M)
    spread = None
    if m_f and float(m_f.group(1)) > 0:
        spread = round(float(m_f.group(2)) / float(m_f.group(1)), 3)
    return {
        "queries": int(m_q.group(1)),
        "qps": float(m_q.group(2)),
        "p50": percentile_from_histogram(buckets, 50),
        "p99": percentile_from_histogram(buckets, 99),
        "sb_p99": float(m_p.group(1)) if m_p else None,
        "errors": int(m_e.group(1)) if m_e else 0,
        "reconnects": int(m_r.group(1)) if m_r else 0,
        "max_ms": float(m_max.group(1)) if m_max else None,
        "spread": spread,
    }


def fmt(v, spec):
    """format(v, spec), or "-" padded to the spec's width when v is None."""
    if v is not None:
        return format(v, spec)
    m = re.match(r"^[+ -]?(\d+)", spec)
    return "-".rjust(int(m.group(1))) if m else "-"


def cmd_parse(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        r = parse_sysbench(f.read())
    if r is None:
        return 1
    print("\t".join(
        "-" if r[k] is None else str(r[k])
        for k in ("queries", "qps", "p50", "p99", "sb_p99", "errors", "reconnects",
                  "max_ms", "spread")))
    return 0


def num(s):
    if s in ("", "-", None):
        return None
    try:
        return float(s)
    except ValueError:
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def read_runs(path, columns):
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            runs.append(dict(zip(columns, line.rstrip("\n").split("\t"))))
    return runs


def aggregate(rs, target, clk_tck):
    """Medians over the runs rs (one target, one combination), or None."""
    ok = [r for r in rs if r["rc"] == "0" and num(r["queries"])]
    if not rs:
        return None
    out = {"runs": len(rs), "ok": len(ok)}
    qpss = [num(r["qps"]) for r in ok if num(r["qps"]) is not None]
    out["qps"] = median(qpss)
    out["qps_min"] = min(qpss) if qpss else None
    out["qps_max"] = max(qpss) if qpss else None
    out["p50"] = median([num(r["p50"]) for r in ok])
    out["p99"] = median([num(r["p99"]) for r in ok])

    def per_query_us(col):
        vals = []
        for r in ok:
            ticks, q = num(r[col]), num(r["queries"])
            if ticks is not None and q:
                vals.append(ticks / clk_tck * 1e6 / q)
        return median(vals)

    out["proxy_us"] = per_query_us("proxy_ticks") if target != "direct" else None
    out["mdb_us"] = per_query_us("mdb_ticks")
    if "conns_max" in rs[0]:
        maxes = [num(r["conns_max"]) for r in ok if num(r["conns_max"]) is not None]
        out["conns_max"] = max(maxes) if maxes else None
        out["conns_median"] = median([num(r["conns_median"]) for r in ok])
        out["max_ms"] = median([num(r["max_ms"]) for r in ok])
        out["spread"] = median([num(r["spread"]) for r in ok])
    return out


def ratio(a, b, key):
    """a[key] / b[key] for two aggregates, or None if either is missing."""
    if a is None or b is None or not a.get(key) or not b.get(key):
        return None
    return a[key] / b[key]


def qps_ratio(a, b):
    return ratio(a, b, "qps")


def figure(res, target, key):
    """One median figure of a target, or None if it has no successful run."""
    r = res.get(target)
    return None if not r or not r["ok"] else r[key]


def pair_cost(res, on_target, off_target):
    """on_target vs off_target: (QPS ratio, proxy CPU ratio, mariadbd CPU
    ratio, proxy CPU difference in us/q)."""
    on, off = res.get(on_target), res.get(off_target)
    diff = None
    if on and off and on.get("proxy_us") is not None and off.get("proxy_us") is not None:
        diff = on["proxy_us"] - off["proxy_us"]
    return (qps_ratio(on, off), ratio(on, off, "proxy_us"), ratio(on, off, "mdb_us"), diff)


# Same-run comparisons of two silos: (on, off, per-block label, section
# title, what on/off means).
PAIRS = [
    ("silo", "silo-nolimits", "limits on/off",
     "Limits on vs off (same run): on = silo, every plan limit finite but never "
     "reached (all checked on every statement); off = silo-nolimits, same binary "
     "and config, every limit \"unlimited\"",
     "  on/off = silo/silo-nolimits of the medians (QPS below 1, CPU above 1: "
     "what the limits cost); diff = silo's CPU us/q minus silo-nolimits'"),
    ("silo-scraped", "silo", "scraped/not",
     "Metrics scraped vs not (same run): on = silo-scraped, its /metrics fetched "
     "every BENCH_SCRAPE_INTERVAL s (1 by default) while measured; off = silo, same "
     "binary and config (metrics port on, never fetched)",
     "  on/off = silo-scraped/silo of the medians (QPS below 1, CPU above 1: "
     "what serving scrapes costs); diff = silo-scraped's CPU us/q minus silo's"),
]


def pair_line(res, on_target, off_target, label):
    """The per-block line of a pair (mariadbd only for the limits pair)."""
    q, p, m, d = pair_cost(res, on_target, off_target)
    line = (f"  {label}, {on_target}/{off_target}: QPS = {fmt(q, '.3f')}   "
            f"silo CPU us/q = {fmt(p, '.3f')} ({fmt(d, '+.1f')} us)")
    if off_target == "silo-nolimits":
        line += f"   mariadbd CPU us/q = {fmt(m, '.3f')}"
    return line


def pair_rows(lines, summary, on_target, off_target):
    """The rows of an on/off block: one per (threads, ps-mode)."""
    lines.append(f"{'thr':>4} {'ps':<7} {'QPS on':>9} {'QPS off':>9} {'QPS on/off':>10} "
                 f"{'silo us/q on/off':>17} {'on/off':>7} {'diff us':>8} "
                 f"{'mariadbd us/q on/off':>21} {'on/off':>7} {'p99 ms on/off':>14}")
    for threads, ps, res, *_ in summary:
        lq, lp, lm, ld = pair_cost(res, on_target, off_target)
        on_off = (on_target, off_target)
        cpu = "/".join(fmt(figure(res, t, "proxy_us"), ".1f") for t in on_off)
        mdb = "/".join(fmt(figure(res, t, "mdb_us"), ".1f") for t in on_off)
        p99 = "/".join(fmt(figure(res, t, "p99"), ".3f") for t in on_off)
        lines.append(
            f"{threads:>4} {ps:<7} {fmt(figure(res, on_target, 'qps'), '9.0f')} "
            f"{fmt(figure(res, off_target, 'qps'), '9.0f')} {fmt(lq, '10.3f')} "
            f"{cpu:>17} {fmt(lp, '7.3f')} {fmt(ld, '+8.1f')} "
            f"{mdb:>21} {fmt(lm, '7.3f')} {p99:>14}")


def ps_order(ps):
    return 0 if ps == "auto" else 1


def cmd_table(path, clk_tck):
    clk_tck = float(clk_tck)
    runs = read_runs(path, RUN_COLUMNS)

    combos = []
    for r in runs:
        key = (int(r["threads"]), r["ps"])
        if key not in combos:
            combos.append(key)
    combos.sort(key=lambda k: (k[0], ps_order(k[1])))

    def agg(threads, ps, target):
        rs = [r for r in runs
              if int(r["threads"]) == threads and r["ps"] == ps and r["target"] == target]
        return aggregate(rs, target, clk_tck)

    # A pair's comparison appears only when the run had its "on" and "off"
    # targets; a missing one then reads as "-".
    seen = {r["target"] for r in runs}
    pairs = [p for p in PAIRS if p[0] in seen and p[1] in seen]

    lines = []
    summary = []
    for threads, ps in combos:
        res = {t: agg(threads, ps, t) for t in TARGETS}
        rounds = max((r["runs"] for r in res.values() if r), default=0)
        lines.append("")
        lines.append(f"threads={threads}  ps-mode={ps}  "
                     f"({rounds} run(s) per target; median shown)")
        lines.append(f"  {'target':<13} {'QPS':>10} {'QPS min-max':>17} {'p50 ms':>8} {'p99 ms':>8} "
                     f"{'proxy CPU us/q':>15} {'mariadbd CPU us/q':>18}")
        for t in TARGETS:
            r = res[t]
            if r is None:
                continue
            if r["ok"] == 0:
                lines.append(f"  {t:<13} {'FAILED':>10}  (see the run logs)")
                continue
            note = "" if r["ok"] == r["runs"] else f"  ({r['runs'] - r['ok']} failed run(s))"
            spread = f"{fmt(r['qps_min'], '.0f')}-{fmt(r['qps_max'], '.0f')}"
            lines.append(
                f"  {t:<13} {fmt(r['qps'], '10.0f')} {spread:>17} {fmt(r['p50'], '8.3f')} "
                f"{fmt(r['p99'], '8.3f')} {fmt(r['proxy_us'], '15.1f')} "
                f"{fmt(r['mdb_us'], '18.1f')}{note}")
        sd = qps_ratio(res["silo"], res["direct"])
        sh = qps_ratio(res["silo"], res["haproxy"])
        hd = qps_ratio(res["haproxy"], res["direct"])
        lines.append(f"  silo/direct = {fmt(sd, '.3f')}   silo/haproxy = {fmt(sh, '.3f')}"
                     f"   haproxy/direct = {fmt(hd, '.3f')}")
        for on_target, off_target, label, *_ in pairs:
            lines.append(pair_line(res, on_target, off_target, label))
        summary.append((threads, ps, res, sd, sh, hd))

    lines.append("")
    lines.append("Summary (QPS; ratios of QPS; CPU = proxy's own user+system CPU per query)")
    hdr = (f"{'thr':>4} {'ps':<7} {'direct':>9} {'haproxy':>9} {'silo':>9} "
           f"{'silo/dir':>8} {'silo/hap':>8} {'hap/dir':>8} "
           f"{'p50 d/h/s ms':>20} {'p99 d/h/s ms':>20} {'CPU us/q h/s':>14}")
    lines.append(hdr)
    for threads, ps, res, sd, sh, hd in summary:
        p50 = "/".join(fmt(figure(res, t, "p50"), ".3f") for t in TARGETS[:3])
        p99 = "/".join(fmt(figure(res, t, "p99"), ".3f") for t in TARGETS[:3])
        cpu = "/".join(fmt(figure(res, t, "proxy_us"), ".1f") for t in ("haproxy", "silo"))
        lines.append(
            f"{threads:>4} {ps:<7} {fmt(figure(res, 'direct', 'qps'), '9.0f')} "
            f"{fmt(figure(res, 'haproxy', 'qps'), '9.0f')} {fmt(figure(res, 'silo', 'qps'), '9.0f')} "
            f"{fmt(sd, '8.3f')} {fmt(sh, '8.3f')} {fmt(hd, '8.3f')} "
            f"{p50:>20} {p99:>20} {cpu:>14}")

    for on_target, off_target, _label, title, meaning in pairs:
        lines.append("")
        lines.append(title)
        lines.append(meaning)
        pair_rows(lines, summary, on_target, off_target)
    print("\n".join(lines))
    return 0


def cmd_many(path, clk_tck):
    clk_tck = float(clk_tck)
    runs = read_runs(path, MANY_COLUMNS)
    combos = []
    for r in runs:
        key = (int(r["threads"]), r["ps"])
        if key not in combos:
            combos.append(key)
    combos.sort(key=lambda k: (k[0], ps_order(k[1])))

    lines = []
    summary = []
    for clients, ps in combos:
        res = {t: aggregate([r for r in runs if int(r["threads"]) == clients
                             and r["ps"] == ps and r["target"] == t], t, clk_tck)
               for t in MANY_TARGETS}
        rounds = max((r["runs"] for r in res.values() if r), default=0)
        lines.append("")
        lines.append(f"clients={clients}  ps-mode={ps}  "
                     f"({rounds} run(s) per target; median shown)")
        lines.append(f"  {'target':<8} {'QPS':>10} {'QPS min-max':>17} {'p50 ms':>8} {'p99 ms':>8} "
                     f"{'max ms':>9} {'spread':>7} {'silo CPU us/q':>14} {'mariadbd CPU us/q':>18} "
                     f"{'conns on mariadbd max/median':>29}")
        for t in MANY_TARGETS:
            r = res[t]
            if r is None:
                continue
            if r["ok"] == 0:
                lines.append(f"  {t:<8} {'FAILED':>10}  (see the notes and the run logs)")
                continue
            note = "" if r["ok"] == r["runs"] else f"  ({r['runs'] - r['ok']} failed run(s))"
            spread = f"{fmt(r['qps_min'], '.0f')}-{fmt(r['qps_max'], '.0f')}"
            conns = f"{fmt(r['conns_max'], '.0f')}/{fmt(r['conns_median'], '.0f')}"
            lines.append(
                f"  {t:<8} {fmt(r['qps'], '10.0f')} {spread:>17} {fmt(r['p50'], '8.3f')} "
                f"{fmt(r['p99'], '8.3f')} {fmt(r['max_ms'], '9.1f')} {fmt(r['spread'], '7.2f')} "
                f"{fmt(r['proxy_us'], '14.1f')} {fmt(r['mdb_us'], '18.1f')} {conns:>29}{note}")
        sd = qps_ratio(res["silo"], res["direct"])
        lines.append(f"  silo/direct = {fmt(sd, '.3f')}")
        summary.append((clients, ps, res, sd))

    lines.append("")
    lines.append("Summary, many clients (QPS; ratio of QPS; spread = stddev/mean of queries per "
                 "client; CPU = own user+system CPU per query; conns = highest count of "
                 "connections open on mariadbd)")
    lines.append(f"{'clients':>7} {'ps':<7} {'direct':>9} {'silo':>9} {'silo/dir':>8} "
                 f"{'p50 d/s ms':>15} {'p99 d/s ms':>17} {'spread d/s':>11} {'silo us/q':>9} "
                 f"{'mariadbd us/q d/s':>17} {'conns d/s':>10}")
    for clients, ps, res, sd in summary:
        p50 = "/".join(fmt(figure(res, t, "p50"), ".3f") for t in MANY_TARGETS)
        p99 = "/".join(fmt(figure(res, t, "p99"), ".3f") for t in MANY_TARGETS)
        mdb = "/".join(fmt(figure(res, t, "mdb_us"), ".1f") for t in MANY_TARGETS)
        conns = "/".join(fmt(figure(res, t, "conns_max"), ".0f") for t in MANY_TARGETS)
        spread = "/".join(fmt(figure(res, t, "spread"), ".2f") for t in MANY_TARGETS)
        lines.append(
            f"{clients:>7} {ps:<7} {fmt(figure(res, 'direct', 'qps'), '9.0f')} {fmt(figure(res, 'silo', 'qps'), '9.0f')} "
            f"{fmt(sd, '8.3f')} {p50:>15} {p99:>17} {spread:>11} {fmt(figure(res, 'silo', 'proxy_us'), '9.1f')} "
            f"{mdb:>17} {conns:>10}")
    print("\n".join(lines))
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "parse":
        return cmd_parse(argv[2])
    if len(argv) == 4 and argv[1] == "table":
        return cmd_table(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "many":
        return cmd_many(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
