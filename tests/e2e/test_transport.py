"""bench/paper_scale/device.sh, the GPU machine's side of the transport: what it hands to Snakemake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def _recording_python(tmp_path):
    """A `python` first on PATH that records `python -m snakemake ...` (its folder, then its arguments) in $SMK_ARGS
    instead of running it, and is the real interpreter for everything else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        'if [ "$1" = -m ] && [ "$2" = snakemake ]; then shift 2; echo "$PWD $@" >"$SMK_ARGS"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir


def test_start_hands_every_target_to_the_detached_run(tmp_path):
    """`device.sh start publish` runs `snakemake ... publish` detached. (It once dropped the first target: bash -c
    took it as $0, and a paper-scale run made the default target instead of `publish`.) Snakemake itself is replaced
    by a recorder of its arguments here; everything else is the real script."""
    (tmp_path / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", tmp_path / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "resources").symlink_to(ROOT / "resources")   # the config's paths are checked when it loads
    bin_dir = _recording_python(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml",
           "SMK_ARGS": str(tmp_path / "args"), "START_WAIT_S": "0"}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "start", "publish", "stage1"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "run.done").exists():
        time.sleep(0.2)
    assert (tmp_path / "run.done").read_text().strip() == "0"
    _, *args = (tmp_path / "args").read_text().split()
    assert args[-2:] == ["publish", "stage1"], args
    assert ["--configfile", "config.yaml"] == args[:2] and "--workflow-profile" in args


def test_extra_config_goes_after_the_run_config(tmp_path):
    """EXTRA_CONFIG (e.g. bench/paper_scale/int4_fbgemm.yaml) is handed to Snakemake as a second --configfile value
    after the run's, so its keys win; without it the command is as before."""
    (tmp_path / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", tmp_path / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    bin_dir = _recording_python(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml",
           "SMK_ARGS": str(tmp_path / "args")}
    for extra, want in (("bench/paper_scale/int4_fbgemm.yaml", ["config.yaml", "bench/paper_scale/int4_fbgemm.yaml"]), ("", ["config.yaml"])):
        subprocess.run(["bash", "bench/paper_scale/device.sh", "run", "results/eval/closed_book/predictions.jsonl"], cwd=tmp_path,
                       env={**env, "EXTRA_CONFIG": extra}, check=True, capture_output=True)
        _, *args = (tmp_path / "args").read_text().split()
        assert args[:len(want) + 2] == ["--configfile", *want, "--profile"], args
        assert args[-1] == "results/eval/closed_book/predictions.jsonl"


def test_int4_and_nf4_overrides_validate_over_the_curve_config():
    """Each override merged over config.qwen-curve.yaml is a valid config: int4 through eval.quantization (only the
    answering rules see it, rules/common.smk), NF4 through the model section's own format."""
    import yaml

    from gistpoc.config import validate_config

    base = yaml.safe_load((ROOT / "config.qwen-curve.yaml").read_text())
    extra = yaml.safe_load((ROOT / "bench/paper_scale/int4_fbgemm.yaml").read_text())
    merged = {**base, "eval": {**base["eval"], **extra["eval"]}}
    cfg = validate_config(merged)
    assert cfg["eval"]["quantization"] == "int4-fbgemm" and cfg["model"]["quantization"] == "none"
    nf4 = yaml.safe_load((ROOT / "bench/paper_scale/nf4.yaml").read_text())
    cfg = validate_config({**base, "model": {**base["model"], **nf4["model"]}})
    assert cfg["model"]["quantization"] == "nf4" and cfg["eval"]["quantization"] == "model"


def test_start_in_run_dir_runs_in_a_copy_outside_the_synced_tree(tmp_path):
    """With RUN_DIR, `device.sh start` copies the tree there (results made on this side included, transport and logs
    not), links the installed wheels, models and parts, and runs Snakemake in the copy, so a device call that
    re-syncs the tree while the run goes cannot pull modules from under it; `wait` then reads the copy's progress."""
    root, run_dir = tmp_path / "tree", tmp_path / "run"
    (root / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", root / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    (root / "resources").symlink_to(ROOT / "resources")
    (root / "results/report").mkdir(parents=True)
    (root / "results/report/config.yaml").write_text("made here")
    for d in (".dsite", ".dmodel", "device_in", "logs"):
        (root / d).mkdir()
        (root / d / "marker").write_text(d)
    bin_dir = _recording_python(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml",
           "SMK_ARGS": str(tmp_path / "args"), "START_WAIT_S": "0", "RUN_DIR": str(run_dir)}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "start", "publish"], cwd=root, env=env, check=True, capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (run_dir / "run.done").exists():
        time.sleep(0.2)
    assert (run_dir / "run.done").read_text().strip() == "0"
    assert not (root / "run.done").exists()
    where, *args = (tmp_path / "args").read_text().split()
    assert Path(where).resolve() == run_dir.resolve() and args[-1] == "publish"
    assert (run_dir / "results/report/config.yaml").read_text() == "made here"
    for d in (".dsite", ".dmodel", "device_in"):
        assert (run_dir / d).is_symlink() and (run_dir / d / "marker").read_text() == d
    assert not (run_dir / "logs").exists()
    r = subprocess.run(["bash", "bench/paper_scale/device.sh", "wait", "1"], cwd=root, env=env, check=True,
                       capture_output=True, text=True)
    assert "exit: 0" in r.stdout


def test_second_run_starts_in_a_copy_with_its_own_joined_model(tmp_path):
    """`device.sh second stage1` (a second run beside the first on the card): the copy of the tree gets the GGUF joined
    from the s-parts and checked, shares the installed wheels, and its detached Snakemake gets the second config and
    the targets; the first tree's results are not copied."""
    root = tmp_path / "tree"
    (root / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", root / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    (root / "resources").symlink_to(ROOT / "resources")
    (root / "results").mkdir()
    (root / "results/first_run_output").write_text("x")
    (root / ".dsite").mkdir()
    for f in ("WHEELS_OK", "CPU_MADE_OK", "MINILM_OK"):
        (root / ".dsite" / f).touch()
    blob = os.urandom(3000)
    import hashlib

    for i, part in enumerate((blob[:1500], blob[1500:])):
        d = root / f"device_in/s{i + 1}"
        d.mkdir(parents=True)
        (d / f"s_part_{i:02d}").write_bytes(part)
    (root / "device_in/s1/NAME").write_text("model.gguf\n")
    (root / "device_in/s1/COUNT").write_text("2\n")
    (root / "device_in/s1/SHA256").write_text(hashlib.sha256(blob).hexdigest() + "\n")
    bin_dir = _recording_python(tmp_path)
    second = tmp_path / "second"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml",
           "SECOND_CONFIG": "config.yaml", "SECOND_DIR": str(second), "SMK_ARGS": str(tmp_path / "args"), "START_WAIT_S": "0"}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "second", "stage1"], cwd=root, env=env, check=True, capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (second / "run.done").exists():
        time.sleep(0.2)
    assert (second / "run.done").read_text().strip() == "0"
    assert (second / ".dmodel/model.gguf").read_bytes() == blob
    assert (second / ".dsite").resolve() == (root / ".dsite").resolve() and not (second / "results").exists()
    cwd, *args = (tmp_path / "args").read_text().split()
    assert cwd == str(second) and args[:2] == ["--configfile", "config.yaml"] and args[-1] == "stage1"
    # a corrupt part stops it with the file named, before anything starts
    (root / "device_in/s2/s_part_01").write_bytes(b"y" * 1500)
    (second / ".dmodel/model.gguf").unlink()
    r = subprocess.run(["bash", "bench/paper_scale/device.sh", "second", "stage1"], cwd=root, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "checksum mismatch" in r.stderr


def unpacked_tree(tmp_path):
    """A tree with device.sh and the default config whose wheels, CPU-made files and MiniLM are already unpacked
    (their OK markers in .dsite), for `device.sh unpack` to add one more thing to."""
    root = tmp_path / "tree"
    (root / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", root / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    (root / ".dsite").mkdir()
    for f in ("WHEELS_OK", "CPU_MADE_OK", "MINILM_OK"):
        (root / ".dsite" / f).touch()
    return root


def test_unpack_joins_the_debian_packages_into_the_configs_folder(tmp_path):
    """Stage 1's text at volume travels as d-parts of one tar of the locked .deb files (pack.sh); `device.sh unpack`
    joins and checks them and unpacks them where sources.debian_docs.dir says, once."""
    import hashlib
    import tarfile

    root = unpacked_tree(tmp_path)
    src = tmp_path / "debs"
    src.mkdir()
    (src / "a_1_all.deb").write_bytes(os.urandom(2000))
    with tarfile.open(tmp_path / "debs.tar", "w") as tar:
        tar.add(src / "a_1_all.deb", arcname="./a_1_all.deb")
    blob = (tmp_path / "debs.tar").read_bytes()
    half = len(blob) // 2
    for i, part in enumerate((blob[:half], blob[half:])):
        (root / f"device_in/d{i + 1}").mkdir(parents=True)
        (root / f"device_in/d{i + 1}/d_part_{i:02d}").write_bytes(part)
    (root / "device_in/d1/NAME").write_text("debs.tar\n")
    (root / "device_in/d1/COUNT").write_text("2\n")
    (root / "device_in/d1/SHA256").write_text(hashlib.sha256(blob).hexdigest() + "\n")
    (root / "device_in/d1/DIR").write_text("resources/volume/debs\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml"}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "unpack"], cwd=root, env=env, check=True, capture_output=True)
    assert (root / "resources/volume/debs/a_1_all.deb").read_bytes() == (src / "a_1_all.deb").read_bytes()
    assert (root / ".dsite/DEBS_OK").exists() and not (root / ".dmodel/debs.tar").exists()


def test_collect_returns_the_adapters_of_a_run_that_published_nothing(tmp_path):
    """`device.sh collect` after a `stage1` run (no published folder, no device_out/ yet) returns the trained adapters
    and the results without weights. (It once failed at the first tar: device_out/ was made only for a published run,
    and a stage-1 run's adapters were nearly lost.)"""
    (tmp_path / "bench/paper_scale").mkdir(parents=True)
    shutil.copy(ROOT / "bench/paper_scale/device.sh", tmp_path / "bench/paper_scale/device.sh")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    (tmp_path / "results/pretrained/gist10").mkdir(parents=True)
    (tmp_path / "results/pretrained/gist10/adapter_model.safetensors").write_bytes(b"weights")
    (tmp_path / "results/pretrained/gist10/train_log.csv").write_text("step,loss\n1,2.0\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml", "OUT": str(out)}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "collect"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert not (out / "published.tar.gz").exists()
    back = tmp_path / "back"
    back.mkdir()
    for name in ("adapters", "results"):
        parts = sorted(out.glob(f"{name}.tar.gz.part_*"))
        assert parts, name
        (back / f"{name}.tar.gz").write_bytes(b"".join(p.read_bytes() for p in parts))
        subprocess.run(["tar", "xzf", f"{name}.tar.gz", "-C", str(back)], cwd=back, check=True)
    assert (back / "results/pretrained/gist10/adapter_model.safetensors").read_bytes() == b"weights"
    assert (back / "results/pretrained/gist10/train_log.csv").exists()


def test_int4_engine_check_answers_twice_and_compares(tmp_path):
    """bench/paper_scale/int4_engine_check.sh run: the bf16 pass without EXTRA_CONFIG, then NF4 and int4 with their
    override after the run config, each pass's predictions kept apart, and engine_check of int4 against both.
    Snakemake is a recorder that writes each pass's predictions (the int4 pass changes one answer)."""
    for f in ("bench/paper_scale/device.sh", "bench/paper_scale/int4_engine_check.sh", "bench/paper_scale/int4_fbgemm.yaml",
              "bench/paper_scale/nf4.yaml", "config.qwen-curve.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    (tmp_path / ".dsite/fbgemm_gpu").mkdir(parents=True)   # installed by an earlier call
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    writer = tmp_path / "fake_smk.py"
    writer.write_text(
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "open(os.environ['SMK_ARGS'], 'a').write(' '.join(args) + '\\n')\n"
        "int4 = 'bench/paper_scale/int4_fbgemm.yaml' in args\n"
        "for m in ('closed_book', 'full_context'):\n"
        "    os.makedirs(f'results/eval/{m}', exist_ok=True)\n"
        "    rows = [{'id': f'{m}-{i}', 'qtype': 'factual', 'answer': 'the cat sat', 'prediction': 'the cat sat'} for i in range(3)]\n"
        "    if int4 and m == 'full_context':\n"
        "        rows[1]['prediction'] = 'the dog sat'\n"
        "    open(f'results/eval/{m}/predictions.jsonl', 'w').write(''.join(json.dumps(r) + '\\n' for r in rows))\n")
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = -m ] && [ "$2" = snakemake ]; then shift 2; exec {sys.executable} {writer} "$@"; fi\n'
        f'exec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "SMK_ARGS": str(tmp_path / "args")}
    env.pop("EXTRA_CONFIG", None)
    r = subprocess.run(["bash", "bench/paper_scale/int4_engine_check.sh", "run"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (tmp_path / "args").read_text().splitlines()
    assert len(calls) == 3
    assert calls[0].startswith("--configfile config.qwen-curve.yaml --profile")
    assert calls[1].startswith("--configfile config.qwen-curve.yaml bench/paper_scale/nf4.yaml --profile")
    assert calls[2].startswith("--configfile config.qwen-curve.yaml bench/paper_scale/int4_fbgemm.yaml --profile")
    out = tmp_path / "device_out/int4check"
    assert "dog" not in (out / "bf16/full_context.jsonl").read_text() and "dog" in (out / "int4-fbgemm/full_context.jsonl").read_text()
    for ref in ("bf16", "nf4"):
        result = json.loads((out / f"{ref}_vs_int4.json").read_text())
        assert result["closed_book"]["identical"] == 3 and result["full_context"]["identical"] == 2, ref
        assert set(result["full_context"]) >= {ref, "int4-fbgemm"}
    assert (out / "DONE").exists() and "full_context: 2 of 3 identical" in r.stdout


def test_int4_engine_check_passkey_runs_the_rules_command_with_the_adapter(tmp_path):
    """bench/paper_scale/int4_engine_check.sh passkey: for bf16, NF4 and int4 it takes evaluate_gist's command from a
    dry run under that pass's config (bench/paper_scale/eval_command.py), points it at ADAPTER with the chunk layout
    PK_METHOD, passkey questions only and outputs kept apart, runs it, and compares int4 with bf16 and NF4 (one int4
    answer differs here). Snakemake prints a dry run whose model section names the pass; the evaluator records."""
    for f in ("bench/paper_scale/int4_engine_check.sh", "bench/paper_scale/eval_command.py", "config.qwen-curve.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    (tmp_path / ".dsite/fbgemm_gpu").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smk = tmp_path / "fake_smk.py"
    smk.write_text(
        "import json, os, shlex, sys\n"
        "open(os.environ['SMK_ARGS'], 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "q = 'int4-fbgemm' if 'bench/paper_scale/int4_fbgemm.yaml' in sys.argv else 'nf4' if 'bench/paper_scale/nf4.yaml' in sys.argv else 'none'\n"
        "model = json.dumps({'quantization': q, 'source': 'split_gguf'})\n"
        "print('rule evaluate_gist:')\n"
        "print('Shell command: python scripts/evaluate_method.py --method gist16per256 --checkpoint results/checkpoints/gist16chunked --out x')\n"
        "print('Shell command: python scripts/evaluate_method.py --method gist16per512 --checkpoint results/checkpoints/gist16chunked '\n"
        "      f'--cache-dir results/eval/gist16per512/caches --model {shlex.quote(model)} --dataset results/dataset/test.gist16.jsonl '\n"
        "      '--out results/eval/gist16per512/answers.jsonl '\n"
        "      '--environment-out results/eval/gist16per512/environment.json --log logs/evaluate_gist/gist16per512.log')\n")
    ev = tmp_path / "fake_eval.py"
    ev.write_text(
        "import json, os, sys\n"
        "a = sys.argv[1:]\n"
        "open(os.environ['EVAL_ARGS'], 'a').write(json.dumps(a) + '\\n')\n"
        "get = lambda f: a[a.index(f) + 1]\n"
        "rows = [{'id': f'p{i}', 'qtype': 'passkey', 'answer': '1234' + str(i), 'prediction': 'The key is 1234' + str(i)} for i in range(4)]\n"
        "if json.loads(get('--model'))['quantization'] == 'int4-fbgemm':\n"
        "    rows[2]['prediction'] = 'The key is 99999'\n"
        "open(get('--out'), 'w').write(''.join(json.dumps(r) + '\\n' for r in rows))\n")
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = -m ] && [ "$2" = snakemake ]; then shift 2; exec {sys.executable} {smk} "$@"; fi\n'
        f'if [ "$1" = scripts/evaluate_method.py ]; then shift; exec {sys.executable} {ev} "$@"; fi\n'
        f'exec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "EVAL_ARGS": str(tmp_path / "args"),
           "ADAPTER": "device_out/ad/C_s1", "SMK_ARGS": str(tmp_path / "smk_args")}
    env.pop("PK_METHOD", None)
    r = subprocess.run(["bash", "bench/paper_scale/int4_engine_check.sh", "passkey"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [json.loads(line) for line in (tmp_path / "args").read_text().splitlines()]
    assert [json.loads(c[c.index("--model") + 1])["quantization"] for c in calls] == ["none", "nf4", "int4-fbgemm"]
    # before each pass, the gist test set the rule reads is made (it is not an input of the baselines' answers)
    smk_calls = (tmp_path / "smk_args").read_text().splitlines()
    assert sum("-n" in c.split() for c in smk_calls) == 3   # one dry run a pass serves both the dataset and the command
    builds = [c for c in smk_calls if "-n" not in c.split()]
    assert builds == [f"--configfile config.qwen-curve.yaml {extra}--cores 4 --nolock results/dataset/test.gist16.jsonl"
                      for extra in ("", "bench/paper_scale/nf4.yaml ", "bench/paper_scale/int4_fbgemm.yaml ")]
    out = tmp_path / "device_out/int4check"
    for c, kind in zip(calls, ("bf16", "nf4", "int4-fbgemm")):
        flags = {c[i]: c[i + 1] for i in range(0, len(c) - 1) if c[i].startswith("--")}
        assert flags["--method"] == flags["--label"] == "gist16per128"
        assert flags["--checkpoint"] == "device_out/ad/C_s1" and flags["--qtypes"] == "passkey"
        assert flags["--out"] == f"device_out/int4check/{kind}/gist16per128.jsonl"
        assert flags["--cache-dir"].startswith(f"device_out/int4check/{kind}/") and flags["--log"].startswith(f"device_out/int4check/{kind}/")
    for ref in ("bf16", "nf4"):
        result = json.loads((out / f"{ref}_vs_int4_passkey.json").read_text())["gist16per128"]
        assert result["identical"] == 3 and result[ref]["passkey_acc"] == 1.0 and result["int4-fbgemm"]["passkey_acc"] == 0.75
    assert (out / "PASSKEY_DONE").exists()


def test_eval_command_names_a_missing_method_or_flag(tmp_path):
    dry = "Shell command: python scripts/evaluate_method.py --method gist10 --out x\n"

    def run(*a):
        return subprocess.run([sys.executable, "bench/paper_scale/eval_command.py", *a], cwd=ROOT, input=dry,
                              capture_output=True, text=True)

    r = run("--method", "gist25")
    assert r.returncode == 1 and "--method gist25" in r.stderr
    r = run("--method", "gist10", "--get", "dataset")
    assert r.returncode == 1 and "no --dataset" in r.stderr
    r = run("--method", "gist10", "--set", "out=y z", "--get", "out")
    assert r.returncode == 0 and r.stdout == "y z\n"
    assert run("--method", "gist10", "--set", "out=y z").stdout == "python scripts/evaluate_method.py --method gist10 --out 'y z'\n"


def test_unpack_installs_bitsandbytes_for_nf4_once(tmp_path):
    """The GPU image has no bitsandbytes (session 31's NF4 pass failed on it): pack.sh puts its wheel in device_in/bnb/
    for an NF4 run, and `device.sh unpack` installs it into the wheels' site folder, once."""
    import zipfile

    root = unpacked_tree(tmp_path)
    (root / "device_in/bnb").mkdir(parents=True)
    with zipfile.ZipFile(root / "device_in/bnb/bitsandbytes-0.0.1-py3-none-any.whl", "w") as z:
        z.writestr("bitsandbytes/__init__.py", "__version__ = '0.0.1'\n")
        z.writestr("bitsandbytes-0.0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.0.1\n")
        z.writestr("bitsandbytes-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("bitsandbytes-0.0.1.dist-info/RECORD", "")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONFIG": "config.yaml"}
    subprocess.run(["bash", "bench/paper_scale/device.sh", "unpack"], cwd=root, env=env, check=True, capture_output=True)
    assert (root / ".dsite/bitsandbytes/__init__.py").exists() and (root / ".dsite/BNB_OK").exists()
    (root / ".dsite/bitsandbytes/__init__.py").unlink()
    subprocess.run(["bash", "bench/paper_scale/device.sh", "unpack"], cwd=root, env=env, check=True, capture_output=True)
    assert not (root / ".dsite/bitsandbytes/__init__.py").exists()   # BNB_OK: not installed again
