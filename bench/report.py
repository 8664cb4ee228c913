"""Turn the JSON lines the benchmarks print into Markdown tables, and append them to a file.

One table per benchmark (the ``bench`` field), one row per line, the columns every line has;
what is the same on every line (machine, commit, torch) goes into the heading instead. Usage:

    python bench/report.py results.jsonl --title "GPU suite" --command "bench/gpu_suite.sh" --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SHARED = ("commit", "device", "torch", "threads", "cpu", "gpu")


def read_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects among ``lines`` (other output, such as warnings, is skipped)."""
    records = []
    for line in lines:
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "bench" in record:
                records.append(record)
    return records


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def markdown(records: list[dict[str, Any]], *, title: str, command: str, when: str) -> str:
    """A section with a heading (what, when, on what, with which command) and one table per bench."""
    shared = {}
    for key in SHARED:  # the same wherever given (a test summary carries no machine details)
        values = {json.dumps(r[key]) for r in records if key in r}
        if len(values) == 1:
            shared[key] = json.loads(values.pop())
    machine = ", ".join(f"{key} {value}" for key, value in shared.items())
    parts = [f"### {title}, {when}", "", f"{machine}.", "", f"```\n{command}\n```", ""]
    for bench in dict.fromkeys(r["bench"] for r in records):
        rows = [r for r in records if r["bench"] == bench]
        columns = [key for key in dict.fromkeys(k for r in rows for k in r) if key != "bench" and key not in shared]
        parts += [f"`{bench}`", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        parts += ["| " + " | ".join(_cell(r.get(key, "")) for key in columns) + " |" for r in rows]
        parts.append("")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a file of the benchmarks' output (JSON lines among other lines)")
    parser.add_argument("--title", default="Benchmark suite")
    parser.add_argument("--command", default="bench/gpu_suite.sh")
    parser.add_argument("--append", metavar="MARKDOWN", help="append the section to this file (else print it)")
    args = parser.parse_args()
    records = read_records(Path(args.results).read_text(encoding="utf-8", errors="replace").splitlines())
    if not records:
        print(f"no benchmark results in {args.results}", file=sys.stderr)
        return 1
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = markdown(records, title=args.title, command=args.command, when=when)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as out:
            out.write("\n" + section)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
