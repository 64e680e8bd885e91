"""bench/paper_scale/device.sh, the GPU machine's side of the transport: what it hands to Snakemake."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from tests.conftest import ROOT


def test_start_hands_every_target_to_the_detached_run(tmp_path):
    """`device.sh start publish` runs `snakemake ... publish` detached. (It once dropped the first target: bash -c
    took it as $0, and a paper-scale run made the default target instead of `publish`.) Snakemake itself is replaced
    by a recorder of its arguments here; everything else is the real script."""
    (tmp_path / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", tmp_path / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "resources").symlink_to(ROOT / "resources")   # the config's paths are checked when it loads
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        'if [ "$1" = -m ] && [ "$2" = snakemake ]; then shift 2; echo "$@" >"$SMK_ARGS"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml",
           "SMK_ARGS": str(tmp_path / "args"), "START_WAIT_S": "0"}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "start", "publish", "stage1"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "run.done").exists():
        time.sleep(0.2)
    assert (tmp_path / "run.done").read_text().strip() == "0"
    args = (tmp_path / "args").read_text().split()
    assert args[-2:] == ["publish", "stage1"], args
    assert ["--configfile", "config.yaml"] == args[:2] and "--workflow-profile" in args
