"""The shipped stage-1 gist adapters (resources/pretrained/smollm2-135m) and the gist.pretrained setting."""

from __future__ import annotations

import json

import pytest
import yaml

from gistpoc.config import ConfigError, validate_config
from gistpoc.data.documents import split_of
from tests.conftest import ROOT

SHIPPED = ROOT / "resources/pretrained/smollm2-135m"


def _default():
    return validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))


def test_shipped_adapters_are_small_and_saw_training_documents_only():
    files = [f for f in SHIPPED.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 15 * 2**20
    paper = validate_config(yaml.safe_load((ROOT / "config.paper.yaml").read_text()))
    for n in _default()["gist"]["n_tokens"]:
        prov = json.loads((SHIPPED / f"gist{n}/provenance.json").read_text())
        seen = set(prov["training_documents"]) | set(prov["heldout_documents"])
        assert prov["n_gist"] == n and prov["shipped_dtype"] == "bfloat16" and len(seen) > 100
        # the split is a function of the document id alone: train in config.yaml is train in config.paper.yaml
        assert all(split_of(d) == "train" for d in seen)
        assert prov["heldout_passkey"] and prov["commit"] and prov["steps"] > 0
    assert paper["gist"]["pretrained"] == "train" and _default()["gist"]["pretrained"] == "resources/pretrained/smollm2-135m"


@pytest.mark.parametrize("n", [10, 25, 50])
def test_shipped_adapter_fits_the_bundled_model_and_loads(n, model_dir):
    """Trained on a GPU in bf16, validated here against the fp32 CPU model: same base fingerprint, ids, LoRA."""
    import torch

    from gistpoc.model import load_model
    from gistpoc.train import pretrained
    from gistpoc.train.loop import prepare_trainable

    cfg = _default()["train"]
    loaded = load_model({"device": "cpu", "dtype": "float32"}, model_dir, n_gist=n, trainable=True)
    prov = pretrained.check(SHIPPED / f"gist{n}", loaded, cfg)
    assert prov["n_gist"] == n
    model = prepare_trainable(loaded.model, loaded.gist_ids, cfg)
    before = {k: v.clone() for k, v in model.named_parameters() if "lora_B" in k}
    pretrained.load_weights(model, SHIPPED / f"gist{n}")
    after = dict(model.named_parameters())
    assert all(torch.count_nonzero(after[k]) > 0 and not torch.equal(after[k], v) for k, v in before.items())


def test_gist_pretrained_setting_is_validated():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    with pytest.raises(ConfigError, match=r"gist.pretrained: 'resources/nowhere' holds no adapter folder for N = \[10, 25, 50\]"):
        validate_config({**raw, "gist": {**raw["gist"], "pretrained": "resources/nowhere"}})
    with pytest.raises(ConfigError, match="needs train.method: lora"):
        validate_config({**raw, "train": {**raw["train"], "method": "full"}})
    with pytest.raises(ConfigError, match="pretrain.max_steps"):
        validate_config({**raw, "pretrain": {"max_steps": -1}})
    with pytest.raises(ConfigError, match=r"N = \[7\]"):
        validate_config({**raw, "gist": {**raw["gist"], "n_tokens": [7, 25]}})


def test_warm_start_takes_the_lora_and_the_first_gist_rows_of_a_larger_n(model_dir):
    import torch
    from safetensors.torch import load_file

    from gistpoc.model import load_model
    from gistpoc.train import pretrained
    from gistpoc.train.loop import prepare_trainable

    cfg = _default()["train"]
    loaded = load_model({"device": "cpu", "dtype": "float32"}, model_dir, n_gist=10, trainable=True)
    with pytest.raises(pretrained.PretrainedError, match="N = 25 gist tokens, this checkpoint has N = 10"):
        pretrained.check(SHIPPED / "gist25", loaded, cfg)
    assert pretrained.check(SHIPPED / "gist25", loaded, cfg, warm_start=True)["n_gist"] == 25
    model = prepare_trainable(loaded.model, loaded.gist_ids, cfg)
    pretrained.load_weights(model, SHIPPED / "gist25", n_gist=10)
    src = load_file(str(SHIPPED / "gist25/adapter_model.safetensors"))
    mine = dict(model.named_parameters())
    delta = next(v for k, v in mine.items() if "embed_tokens" in k and "trainable_tokens_delta" in k)
    want = next(v for k, v in src.items() if "embed_tokens" in k and "trainable_tokens_delta" in k)
    assert delta.shape[0] == 10 and torch.allclose(delta.float(), want[:10].float())
    lora = next(k for k in src if "layers.0.self_attn.q_proj.lora_B" in k)
    got = next(v for k, v in mine.items() if "layers.0.self_attn.q_proj.lora_B" in k)
    assert torch.allclose(got.float(), src[lora].float())


def test_warm_start_setting_is_validated():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    g = {**raw["gist"], "pretrained": "train"}
    with pytest.raises(ConfigError, match=r"gist.warm_start\[0\]: a warm start is for stage 1, which runs only with gist.pretrained: train"):
        validate_config({**raw, "gist": {**raw["gist"], "warm_start": [{"n": 10, "from": 25}]}})
    # continuing an adapter made elsewhere (the shipped ones) for the same N
    cont = [{"n": n, "from": str(SHIPPED)} for n in (10, 25, 50)]
    assert validate_config({**raw, "gist": {**g, "warm_start": cont}})["gist"]["warm_start"] == cont
    with pytest.raises(ConfigError, match=r"gist.warm_start\[0\]: 'no/such/folder' holds no adapter folder gist10/"):
        validate_config({**raw, "gist": {**g, "warm_start": [{"n": 10, "from": "no/such/folder"}]}})
    assert validate_config({**raw, "gist": {**g, "warm_start": [{"n": 10, "from": 25}]}})["gist"]["warm_start"] == [{"n": 10, "from": 25}]
    with pytest.raises(ConfigError, match=r"gist.warm_start\[0\]: n \(12\) and from \(25\) must both be in gist.n_tokens"):
        validate_config({**raw, "gist": {**g, "warm_start": [{"n": 12, "from": 25}]}})
    with pytest.raises(ConfigError, match="must have more gist tokens than n"):
        validate_config({**raw, "gist": {**g, "warm_start": [{"n": 50, "from": 25}]}})
    with pytest.raises(ConfigError, match="is itself warm-started"):
        validate_config({**raw, "gist": {**g, "warm_start": [{"n": 10, "from": 25}, {"n": 25, "from": 50}]}})
