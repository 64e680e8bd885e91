"""gistpoc.codehash: a rule's code hash follows what its script runs, transitively, and nothing else."""

from __future__ import annotations

import shutil

import pytest

from gistpoc.codehash import code_hash, dependencies
from tests.conftest import ROOT


@pytest.fixture
def scratch():
    d = ROOT / "results" / ".codehash_test"   # inside the repository: paths are hashed relative to it
    d.mkdir(parents=True, exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def rel(paths) -> set[str]:
    return {str(p.relative_to(ROOT)) for p in paths}


def test_a_script_importing_the_method_registry_does_not_follow_the_config_schema():
    """gistpoc.methods validates a config only in its __main__.py (python -m gistpoc.methods --config), which no script
    imports: a new config key reruns no evaluation, while the report, which reads the config, follows it."""
    deps = rel(dependencies("scripts/evaluate_method.py"))
    assert "gistpoc/methods/__init__.py" in deps and "gistpoc/methods/__main__.py" not in deps
    assert "gistpoc/config.py" not in deps and "schemas/config.schema.yaml" not in deps
    assert {"gistpoc/config.py", "schemas/config.schema.yaml"} <= rel(dependencies("scripts/build_report.py"))


def test_the_hash_follows_code_not_formatting(scratch):
    script = scratch / "y.py"
    script.write_text("import gistpoc.methods\nx = 1\n")
    before = code_hash(script)
    script.write_text("import gistpoc.methods\n\n# a comment\nx = 1   # same code\n")
    assert code_hash(script) == before
    script.write_text("import gistpoc.methods\nx = 2\n")
    assert code_hash(script) != before
