"""``grid --ray``: the cells are made by Ray workers (as batch's jobs are) and drawn by the command."""

from __future__ import annotations

import json
import os
from pathlib import Path

from generator.cli.main import main
from tests.grid.test_grid_cli import described, grid_args
from tests.ray_cluster import needs_ray, ray


@needs_ray
def test_a_grid_over_ray_is_made_by_workers_and_drawn_here(tiny_files, tmp_path: Path) -> None:
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "grid"
        args = grid_args(tiny_files, out, "--x", "seed=1,2", "--ray", "--workers", "1", "--worker-threads", "1",
                         "--device", "cpu")
        assert main(args) == 0
    finally:
        ray.shutdown()
    cells = described(out)["cells"]
    assert [c["status"] for c in cells] == ["done", "done"] and (out / "grid.png").is_file()
    records = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert all(r["worker"].rsplit(":", 1)[1] != str(os.getpid()) for r in records)  # made in a worker process
    assert {r["folder"] for r in records} == {c["folder"] for c in cells}
