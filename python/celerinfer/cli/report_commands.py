"""`celerinfer report` (an HTML page and a PDF of stored runs) and `celerinfer show` (a run in
the terminal)."""

from __future__ import annotations

from pathlib import Path

from .bench_commands import DEFAULT_LOG


def _records(args) -> tuple[list[dict], Path]:
    """The records of the runs named (ids, unique prefixes, latest, previous) in the logs given
    (the first is the report's home), else every record."""
    from ..results.run_comparison import list_runs, resolve_run_id
    from ..results.store import read_records

    logs = [Path(p) for p in (args.log_file or [DEFAULT_LOG])]
    records = []
    for log in logs:
        if not log.exists():
            raise FileNotFoundError(f"no results log at {log}: run `celerinfer bench` first, or name one with "
                                    f"--log-file")
        records += read_records(log)
    log = logs[0]
    if not records:
        raise ValueError(f"{', '.join(map(str, logs))} hold(s) no records")
    if args.run_ids:
        runs = list_runs(records)
        wanted = {resolve_run_id(runs, spec) for spec in args.run_ids}
        records = [r for r in records if r.get("run_id") in wanted]
    return records, log


def cmd_report(args) -> int:
    from ..report.content import report_content
    from ..report.render import render_plots, write_html, write_pdf

    records, log = _records(args)
    content = report_content(records, title=args.title)
    out = Path(args.out or log.with_name(log.stem + "_report.html"))
    pngs = render_plots(content)
    write_html(content, out, pngs)
    print(f"report: {out} ({len(content.records)} records of {len(content.runs)} run(s), {len(pngs)} plots)")
    if not args.no_pdf:
        pdf = out.with_suffix(".pdf")
        write_pdf(content, pdf, pngs)
        print(f"        {pdf}")
    for warning in content.warnings[:5]:
        print(f"noise guard: {warning}")
    return 0


def cmd_show(args) -> int:
    from ..report.content import report_content
    from ..report.terminal import show_text

    records, _ = _records(args)
    if not args.run_ids:  # the terminal view shows one run: the latest
        from ..results.run_comparison import list_runs
        latest = list_runs(records)[-1].run_id
        records = [r for r in records if r.get("run_id") == latest]
    print(show_text(report_content(records), width=args.width, ascii_only=args.ascii), end="")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page (and a PDF) of stored runs")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to report (ids, prefixes, latest, previous; "
                   "default: every run in the log)")
    p.add_argument("--log-file", action="append", help=f"results JSONL (default {DEFAULT_LOG}); repeat to report "
                   "several logs together (the run mode's inference_benchmarks/results.jsonl, a sweep's)")
    p.add_argument("--out", help="the HTML file (default: <log>_report.html beside the log); the PDF beside it")
    p.add_argument("--title", help="the page's title")
    p.add_argument("--no-pdf", action="store_true", help="the HTML page only")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("show", help="a run in the terminal: tables and bar charts")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to show (default: the latest)")
    p.add_argument("--log-file", action="append", help=f"results JSONL (default {DEFAULT_LOG})")
    p.add_argument("--width", type=int, help="columns (default: the terminal's)")
    p.add_argument("--ascii", action="store_true", help="bars of '#' instead of block characters")
    p.set_defaults(func=cmd_show)
