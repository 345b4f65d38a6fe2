"""Validates the Bicep of infra/ where no Bicep CLI can run: syntax, and checkov's policy checks.

    .venv/bin/python infra/validate.py [DIRECTORY ...]      # default: infra/

Fails (exit 1, one line per problem) when

- a .bicep file does not parse with pycep-parser (the parser tests/unit/test_infra*.py use);
- checkov (its own venv, .venv/checkov, installed by `make deps` from requirements-checkov.txt)
  reports a failed check, a file it could not parse, or a check that crashed on a resource.
  checkov exits 0 on a parse error and only logs a crashed check, so its JSON report and its
  log are read rather than its exit code.

The skipped checks and their reasons are in .checkov.yaml at the repository root, which is
passed explicitly, so a copy of infra/ elsewhere is judged by the same rules.
`make test` runs this through tests/unit/test_infra_validate.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
# Overridable for a checkov installed elsewhere; `make deps` puts it here.
CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv" / "checkov" / "bin" / "checkov"))
CHECKOV_TIMEOUT_SECONDS = 300


@dataclass
class Result:
    directory: Path
    problems: list[str] = field(default_factory=list)
    # checkov's summary: passed, failed, parsing_errors, resource_count...
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def bicep_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.bicep"))


def syntax_problems(directory: Path) -> list[str]:
    """Every .bicep file that pycep-parser cannot parse, with the parser's first line."""
    from pycep import BicepParser

    problems = []
    for path in bicep_files(directory):
        try:
            BicepParser().parse(file_path=path)
        except Exception as exc:  # lark's UnexpectedInput and friends carry line and column
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(f"{path.relative_to(directory)}: does not parse: {first_line}")
    return problems


def _reports(stdout: str) -> list[dict]:
    """checkov's JSON: one report, a list of them (one per framework), or several documents."""
    decoder, index, reports = json.JSONDecoder(), 0, []
    while True:
        while index < len(stdout) and stdout[index].isspace():
            index += 1
        if index >= len(stdout):
            return reports
        document, index = decoder.raw_decode(stdout, index)
        reports.extend(document if isinstance(document, list) else [document])


def checkov_problems(directory: Path) -> tuple[list[str], dict]:
    if not CHECKOV.is_file():
        return [f"checkov is not installed at {CHECKOV} (`make deps` installs it from requirements-checkov.txt)"], {}
    command = [str(CHECKOV), "--directory", str(directory), "--framework", "bicep", "--skip-download",
               "--config-file", str(CHECKOV_CONFIG), "--output", "json"]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_SECONDS,
                             cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"})
    except subprocess.TimeoutExpired:
        return [f"checkov did not finish within {CHECKOV_TIMEOUT_SECONDS} s"], {}
    try:
        reports = [r for r in _reports(run.stdout) if r.get("check_type") == "bicep"]
    except json.JSONDecodeError:
        reports = []
    if not reports:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        return [f"checkov (exit {run.returncode}) gave no Bicep report: {' | '.join(tail)}"], {}
    problems, summary = [], {}
    for report in reports:
        for key, value in report.get("summary", {}).items():
            summary[key] = summary.get(key, 0) + value if isinstance(value, int) else value
        results = report.get("results", {})
        for failed in results.get("failed_checks", []):
            where = Path(failed.get("file_abs_path") or failed["file_path"])
            lines = failed.get("file_line_range") or ["?", "?"]
            problems.append(f"{where.name}:{lines[0]}-{lines[1]}: {failed['check_id']} failed on "
                            f"{failed['resource']}: {failed.get('check_name', '')}")
        for path in results.get("parsing_errors", []):
            problems.append(f"{Path(path).name}: checkov could not parse it")
    # A check that raises is logged and left out of the report: it checked nothing.
    for line in run.stderr.splitlines():
        if "Failed to run check" in line:
            problems.append(f"checkov: {line.split('[ERROR]')[-1].strip()}")
    if not problems and run.returncode != 0:
        problems.append(f"checkov exited {run.returncode}: {run.stderr.strip()[-300:]}")
    if bicep_files(directory) and not summary.get("passed", 0) + summary.get("failed", 0):
        problems.append("checkov ran no check at all")
    return problems, summary


def validate_one(directory: Path) -> Result:
    directory = directory.resolve()
    result = Result(directory)
    if not bicep_files(directory):
        result.problems.append(f"no .bicep file under {directory}")
        return result
    result.problems.extend(syntax_problems(directory))
    checkov, result.summary = checkov_problems(directory)
    result.problems.extend(checkov)
    return result


def validate(directories: list[Path]) -> dict[Path, Result]:
    """Each directory on its own checkov run (checkov mixes up several --directory of Bicep), side by side."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(directories), 4))) as pool:
        results = list(pool.map(validate_one, directories))
    return {Path(d): r for d, r in zip(directories, results)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directories = [Path(a) for a in args] or [INFRA]
    status = 0
    for directory, result in validate(directories).items():
        s = result.summary
        counts = (f"checkov: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
                  f"{s.get('parsing_errors', 0)} parse errors") if s else "checkov: no report"
        if result.ok:
            print(f"{directory}: valid ({len(bicep_files(directory))} Bicep files parse; {counts})")
        else:
            status = 1
            print(f"{directory}: INVALID ({counts})")
            for problem in result.problems:
                print(f"  {problem}")
    return status


if __name__ == "__main__":
    sys.exit(main())
