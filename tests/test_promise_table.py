"""The runner notebook's table of promise tests counts exactly the cases pytest collects from each file."""
import json, re, subprocess, sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]


def table_counts():
    nb = json.loads((ROOT / "nbs" / "06_runner.ipynb").read_text())
    [cell] = ["".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("## What the promise tests hold")]
    return {m[0]: int(m[1]) for m in re.findall(r"^\| `(test_promises_\w+\.py)` \|.*\| (\d+) \|$", cell, re.M)}


def test_the_promise_table_lists_every_promise_file_with_its_collected_count():
    files = sorted(p.name for p in (ROOT / "tests").glob("test_promises_*.py"))
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *[f"tests/{f}" for f in files]],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    collected = Counter(Path(line.split("::")[0]).name for line in out.stdout.splitlines() if "::" in line)
    assert sum(collected.values()) > 100, out.stdout[-2000:] + out.stderr[-2000:]
    assert table_counts() == dict(collected)
