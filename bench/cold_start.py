"""Cold start: how much does importing our app cost on top of azure.functions itself?

Serverless cold start is a product feature (docs/architecture.md, section 2: heavy SDKs are imported
where used). This measures, in fresh interpreters and in the same run, the import of the
bare ``azure.functions`` package (the baseline every Python function app pays) and of
``function_app`` (ours), and prints the ratio. Run: ``.venv/bin/python bench/cold_start.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 15


def fresh_import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    baseline, ours = [], []
    for _ in range(RUNS):  # interleaved, so drift on a noisy machine hits both alike
        baseline.append(fresh_import_seconds("azure.functions"))
        ours.append(fresh_import_seconds("function_app"))
    base, app = statistics.median(baseline), statistics.median(ours)
    print(f"interpreter + azure.functions: median {base * 1000:.0f} ms over {RUNS} runs")
    print(f"interpreter + function_app:    median {app * 1000:.0f} ms over {RUNS} runs")
    print(f"ratio function_app / azure.functions: {app / base:.2f}")
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, function_app; print(sorted(m for m in ("
         "'fhir.resources', 'jwt', 'azure.identity', 'msgraph', 'azure.communication.phonenumbers', "
         "'httpx', 'azure.data.tables', 'azure.storage.queue', 'opentelemetry', 'azure.monitor') "
         "if m in sys.modules))"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.strip()
    print(f"heavy SDKs loaded at app import: {heavy}")


if __name__ == "__main__":
    main()
