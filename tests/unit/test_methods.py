"""Method names are parsed in one module (gistpoc.methods), the rules' list of methods included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gistpoc.config import load_config
from gistpoc.methods import Method, configured, gist_n, parse
from tests.conftest import ROOT


@pytest.mark.parametrize("name, want", [
    ("closed_book", Method("closed_book", "baseline", "closed_book")),
    ("rag", Method("rag", "baseline", "rag")),
    ("gist25", Method("gist25", "gist", "gist", 25)),
    ("rag_gist10", Method("rag_gist10", "hybrid", "rag_gist", 10)),
    ("kv_select50", Method("kv_select50", "budget", "kv_select", 50)),
    ("truncate_head4", Method("truncate_head4", "budget", "truncate_head", 4)),
    ("gist25_scrambled", Method("gist25_scrambled", "control", "gist", 25, "scrambled")),
    ("gist4_otherdoc", Method("gist4_otherdoc", "control", "gist", 4, "otherdoc")),
    ("gist16per512", Method("gist16per512", "gist", "gist", 16, chunk=512)),            # gist.layout: chunked
    ("gist16per512_otherdoc", Method("gist16per512_otherdoc", "control", "gist", 16, "otherdoc", 512)),
])
def test_every_kind_of_name_parses(name, want):
    assert parse(name) == want


def test_what_a_name_implies():
    assert gist_n("rag_gist25") == 25 and gist_n("gist10_otherdoc") == 10 and gist_n("kv_select25") == 0 and gist_n("rag") == 0
    assert parse("gist25_scrambled").output_dir == "results/controls/gist25_scrambled" and parse("gist25").output_dir == "results/eval/gist25"


@pytest.mark.parametrize("bad", ["gist", "gist-25", "kv_select", "rag25", "kv_select25_scrambled", "full", "gist25_shuffled",
                                 "kv_select16per512", "gist16per0", "gist16per"])
def test_an_unknown_name_is_refused_with_the_forms(bad):
    with pytest.raises(ValueError, match=r"unknown method .*gist<N>"):
        parse(bad)


def test_the_configured_methods_are_the_rules_list():
    cfg = load_config(ROOT / "config.yaml")
    ns, budget = sorted(cfg["gist"]["n_tokens"]), cfg["eval"]["budget"]
    assert configured(cfg) == (["closed_book", "full_context", "rag"] + [f"gist{n}" for n in ns]
                               + [f"{m}{n}" for n in sorted(budget["n"]) for m in budget["methods"]]
                               + [f"rag_gist{n}" for n in sorted(cfg["eval"]["rag_gist"])])
    out = subprocess.run([sys.executable, "-m", "gistpoc.methods", "--config", "config.yaml"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == configured(cfg)
    one = subprocess.run([sys.executable, "-m", "gistpoc.methods", "kv_select25"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(one.stdout) | {} == {"name": "kv_select25", "kind": "budget", "family": "kv_select", "n": 25, "control": "", "chunk": 0,
                                           "uses_gist": False, "output_dir": "results/eval/kv_select25"}


def test_chunk_wise_methods_share_one_checkpoint():
    """gist.chunked: every gist<N>per<C> (and its controls) reads the one checkpoint gist<N>chunked; gist-N reads gist<N>."""
    from gistpoc.methods import checkpoint_key

    assert checkpoint_key("gist16per512") == checkpoint_key("gist16per256_otherdoc") == "gist16chunked"
    assert checkpoint_key("gist25") == checkpoint_key("rag_gist25") == checkpoint_key("gist25_scrambled") == "gist25"
    with pytest.raises(ValueError, match="no gist checkpoint"):
        checkpoint_key("kv_select25")
    cfg = load_config(ROOT / "config.qwen-curve.yaml")
    assert [m for m in configured(cfg) if parse(m).kind == "gist"] == ["gist25", "gist16per256", "gist16per512", "gist16per1024"]
