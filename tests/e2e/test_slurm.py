"""The tiny config end to end through profiles/slurm on a real localhost SLURM (tools/test_slurm.sh starts it)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_workflow import smk, workdir  # noqa: F401  (fixture: a fresh copy of the repo with the model linked)

pytestmark = pytest.mark.skipif(
    os.environ.get("GISTPOC_SLURM") != "1" or not shutil.which("sbatch"),
    reason="needs the localhost SLURM that tools/test_slurm.sh starts (CI runs it)",
)


def test_tiny_config_through_slurm(workdir):  # noqa: F811
    wd = workdir
    res = smk("results/report.html", "--profile", "profiles/slurm", "--configfile", "tests/config.test.yaml", "--jobs", "2",
              # this one-node cluster has 2 CPUs and one fake GPU: site specifics come from the command line
              "--set-resources", "pretrain_gist:cpus_per_gpu=1", "train_gist:cpus_per_gpu=1", "evaluate_gist:cpus_per_gpu=1", "evaluate_baseline:cpus_per_gpu=1",
              "plot_gist_attention:cpus_per_gpu=1", "train_ablation:cpus_per_gpu=1", "evaluate_ablation:cpus_per_gpu=1", "--default-resources", "slurm_partition=debug", "mem_mb=3000", "runtime=30",
              # a one-node test cluster answers at once: poll it every few seconds, not every 10 (most of this check's
              # time was spent waiting between status checks)
              "--seconds-between-status-checks", "3", "--slurm-init-seconds-before-status-checks", "3",
              cwd=wd)
    out = res.stdout + res.stderr
    job_ids = set(re.findall(r"SLURM jobid (\d+)", out)) | set(re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out))
    assert job_ids, out[-3000:]
    assert (wd / "results/report.html").exists()
    logs = list(Path(wd, ".snakemake/slurm_logs").rglob("*.log"))
    assert any("rule_train_gist" in str(p) for p in logs)
    # the light bookkeeping and scoring rules run where Snakemake runs (rules/report.smk: localrules), not as cluster jobs
    assert not any(f"rule_{r}" in str(p) for p in logs for r in ("score_answers", "summarize_eval", "build_report", "plot_mask"))
    assert (wd / "results/eval/gist2/predictions.jsonl").exists() and (wd / "results/eval/summary.csv").exists()
    gpu_logs = [p.read_text() for p in logs if "rule_train_gist" in str(p)]
    assert gpu_logs
