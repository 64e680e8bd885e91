"""Every script's failure lands in its rule's log whole: the one-line reason, then the full traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_job_that_raises_leaves_its_full_traceback_in_the_log(tmp_path):
    log = tmp_path / "logs" / "judge.log"
    res = subprocess.run([sys.executable, "scripts/judge_answers.py", "--predictions", str(tmp_path / "missing.jsonl"),
                          "--endpoint", "{}", "--judge-model", "m", "--out", str(tmp_path / "j.jsonl"), "--log", str(log)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1
    text = log.read_text()
    assert "ERROR gistpoc: FileNotFoundError" in text and "missing.jsonl" in text
    assert "Traceback (most recent call last)" in text and 'scripts/judge_answers.py", line' in text
    # --debug re-raises after logging (for a debugger), instead of exiting quietly with status 1
    res = subprocess.run([sys.executable, "scripts/judge_answers.py", "--predictions", str(tmp_path / "missing.jsonl"),
                          "--endpoint", "{}", "--judge-model", "m", "--out", str(tmp_path / "j.jsonl"), "--debug"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.rstrip().splitlines()[-1].startswith("FileNotFoundError")
