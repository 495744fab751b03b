"""The summary of a `benchmarks.load` run: its pass/fail targets and the printed table."""

from __future__ import annotations

HEADER = ("phase", "load", "throughput", "p50 ms", "p95 ms", "p99 ms", "errors / outcome")


def targets(predict: dict | None, burst: dict | None, reads: dict | None) -> dict[str, bool]:
    out = {}
    if predict is not None:
        out["predict_zero_errors"] = predict["errors"] == 0
    if burst is not None:
        out["burst_only_202_or_429"] = burst["other_answers"] == 0
        out["burst_none_lost_all_succeeded"] = (
            burst["lost"] == 0 and burst["unfinished"] == 0 and burst["succeeded"] == burst["accepted"]
        )
    if reads is not None:
        out["status_reads_p99_under_50ms"] = reads["p99_ms"] is not None and reads["p99_ms"] < 50.0
        out["status_reads_zero_errors"] = reads["errors"] == 0
    return out


def _predict_row(p: dict) -> tuple:
    return (
        "predict",
        f"{p['clients']} clients x {p['texts_per_request']} texts",
        f"{p['requests_per_s']} req/s ({p['texts_per_s']} texts/s)",
        p["p50_ms"],
        p["p95_ms"],
        p["p99_ms"],
        f"{p['errors']} errors / {p['requests']} requests",
    )


def _burst_row(b: dict) -> tuple:
    first = b["rounds"][0]["submit_latency"]
    return (
        "burst",
        f"{len(b['rounds'])} x {b['burst_size']} submissions",
        f"{b['jobs_per_s_drained']} jobs/s drained",
        first["p50_ms"],
        first["p95_ms"],
        first["p99_ms"],
        f"{b['accepted']} accepted, {b['refused_429']} x 429, {b['other_answers']} other, "
        f"{b['succeeded']} succeeded, {b['lost']} lost",
    )


def _status_row(s: dict) -> tuple:
    return (
        "status reads",
        f"{s['target_rate_per_s']:.0f} req/s while training",
        f"{s['achieved_rate_per_s']} req/s",
        s["p50_ms"],
        s["p95_ms"],
        s["p99_ms"],
        f"{s['errors']} errors; {s['share_while_running']:.0%} saw 'running'",
    )


def table(results: dict) -> str:
    rows = [HEADER]
    for key, row in (("predict", _predict_row), ("burst", _burst_row), ("status_reads", _status_row)):
        if results[key]:
            rows.append(row(results[key]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
