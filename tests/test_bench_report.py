"""bench/report.py: the benchmarks' JSON lines become the Markdown BENCHMARKS.md keeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report import markdown, read_records

ROOT = Path(__file__).resolve().parents[1]
LINES = [
    "W1129 warning: something the benchmark printed",
    '{"bench": "clip_loop", "commit": "abc123", "device": "cuda", "gpu": "NVIDIA H200", "size": 256, '
    '"seconds_per_step": 0.0412}',
    '{"bench": "clip_loop", "commit": "abc123", "device": "cuda", "gpu": "NVIDIA H200", "size": 512, '
    '"seconds_per_step": 0.1}',
    '{"bench": "gpu_tests", "device": "cuda", "result": "12 passed, 1 skipped in 40s"}',
    '{"not a bench": 1}',
    "{broken json}",
]


def test_each_benchmark_gets_a_table_and_the_machine_goes_into_the_heading() -> None:
    records = read_records(LINES)
    assert [r["bench"] for r in records] == ["clip_loop", "clip_loop", "gpu_tests"]
    text = markdown(records, title="Suite run on cuda", command="bench/gpu_suite.sh", when="2026-11-29 20:00 UTC")
    heading = "### Suite run on cuda, 2026-11-29 20:00 UTC\n\ncommit abc123, device cuda, gpu NVIDIA H200."
    assert text.startswith(heading)
    assert "| size | seconds_per_step |\n| --- | --- |\n| 256 | 0.0412 |\n| 512 | 0.1 |" in text
    assert "| result |\n| --- |\n| 12 passed, 1 skipped in 40s |" in text


def test_the_script_appends_a_section_and_refuses_a_file_without_results(tmp_path: Path) -> None:
    results, target = tmp_path / "results.jsonl", tmp_path / "BENCHMARKS.md"
    results.write_text("\n".join(LINES), encoding="utf-8")
    target.write_text("# Benchmarks\n", encoding="utf-8")
    script = str(ROOT / "bench" / "report.py")
    subprocess.run([sys.executable, script, str(results), "--append", str(target)], check=True)
    assert target.read_text(encoding="utf-8").startswith("# Benchmarks\n\n### Benchmark suite, ")
    (tmp_path / "empty.txt").write_text("nothing here\n", encoding="utf-8")
    done = subprocess.run([sys.executable, script, str(tmp_path / "empty.txt")], capture_output=True, text=True)
    assert done.returncode == 1 and "no benchmark results" in done.stderr
