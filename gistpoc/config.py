"""Load and validate the workflow configuration against ``schemas/config.schema.yaml``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range; the message names the key."""


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def _fill_defaults(schema: dict, node: Any, root: dict) -> None:
    """Fill ``default`` values of object properties in place (jsonschema does not)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = {**root["$defs"][ref], **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(node, dict):
        for name, sub in schema.get("properties", {}).items():
            if "$ref" in sub:
                sub = {**root["$defs"][sub["$ref"].split("/")[-1]], **{k: v for k, v in sub.items() if k != "$ref"}}
            if name not in node and "default" in sub:
                node[name] = copy.deepcopy(sub["default"])
            if name in node:
                _fill_defaults(sub, node[name], root)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for item in node:
            _fill_defaults(schema["items"], item, root)


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, _nested: bool = False) -> dict:
    """Validate ``config`` (filled with schema defaults) and return it.

    Raises ConfigError naming the offending key, e.g. ``train.lr_lora: -1 is less than ...``.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    config = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            key = _key_path(err.absolute_path)
            if err.validator == "additionalProperties":
                extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
                key = ".".join([key] if key != "<root>" else []) + ("." if key != "<root>" else "")
                lines.append(f"unknown key {key}{extra[0] if len(extra) == 1 else extra}")
            else:
                lines.append(f"{key}: {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _fill_defaults(schema, config, schema)
    if _nested:  # a train section with overrides applied, checked on its own
        return config
    names = [a["name"] for a in config.get("ablations", [])]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablations: names must be unique, got {names}")
    for i, ab in enumerate(config.get("ablations", [])):
        merged = {**config, "train": merged_train(config["train"], ab["train"]), "ablations": []}
        try:
            validate_config(merged, schema_path, _nested=True)
        except ConfigError as err:
            raise ConfigError(str(err).replace("  train.", f"  ablations[{i}].train.").replace("unknown key train.", f"unknown key ablations[{i}].train.")) from err
    if "pretrain" in config:
        merged = {**config, "train": merged_train(config["train"], config["pretrain"]), "ablations": [], "pretrain": {}}
        try:
            validate_config(merged, schema_path, _nested=True)
        except ConfigError as err:
            raise ConfigError(str(err).replace("  train.", "  pretrain.").replace("unknown key train.", "unknown key pretrain.")) from err
    settings = [("gist.pretrained", config["gist"]["pretrained"], config["train"])] + [
        (f"ablations[{i}].pretrained", ab["pretrained"], merged_train(config["train"], ab["train"]))
        for i, ab in enumerate(config.get("ablations", [])) if "pretrained" in ab]
    for key, value, train in settings:
        if value == "none":
            continue
        if train["method"] != "lora":
            raise ConfigError(f"{key}: {value!r} needs train.method: lora (a pre-trained adapter is LoRA + gist rows)")
        if value != "train":
            missing = [n for n in config["gist"]["n_tokens"] if not (Path(value) / f"gist{n}").is_dir()]
            if missing and key == "gist.pretrained":
                raise ConfigError(f"{key}: {value!r} holds no adapter folder for N = {missing} "
                                  f"(expected {value}/gist<N>/ for every gist.n_tokens; or set gist.pretrained: train | none)")
    ns, warm = config["gist"]["n_tokens"], config["gist"]["warm_start"]
    for i, w in enumerate(warm):
        key = f"gist.warm_start[{i}]"
        if warm and config["gist"]["pretrained"] != "train":
            raise ConfigError(f"{key}: a warm start is for stage 1, which runs only with gist.pretrained: train "
                              f"(got {config['gist']['pretrained']!r})")
        if isinstance(w["from"], str):  # continue a stage-1 adapter made elsewhere (same N)
            if w["n"] not in ns:
                raise ConfigError(f"{key}: n ({w['n']}) must be in gist.n_tokens {ns}")
            if not (Path(w["from"]) / f"gist{w['n']}").is_dir():
                raise ConfigError(f"{key}: {w['from']!r} holds no adapter folder gist{w['n']}/ to continue")
            continue
        if w["n"] not in ns or w["from"] not in ns:
            raise ConfigError(f"{key}: n ({w['n']}) and from ({w['from']}) must both be in gist.n_tokens {ns}")
        if w["from"] <= w["n"]:
            raise ConfigError(f"{key}: from ({w['from']}) must have more gist tokens than n ({w['n']}): its first n rows seed gist-{w['n']}")
        if w["from"] in {v["n"] for v in warm if isinstance(v["from"], int)}:
            raise ConfigError(f"{key}: gist-{w['from']} is itself warm-started; start from a checkpoint that is not")
    if len({w["n"] for w in warm}) != len(warm):
        raise ConfigError("gist.warm_start: each n at most once")
    model = config["model"]
    if model["source"] == "split_gguf":
        from gistpoc.model_sources import REGISTRY

        if model.get("gguf") not in REGISTRY:
            raise ConfigError(f"model.gguf: {model.get('gguf')!r} is not a split model this version knows ({', '.join(sorted(REGISTRY))})")
    from gistpoc.methods import chunked

    per = chunked(config)
    for key in ("scramble_control", "other_doc_control"):
        bad = [n for n in config["eval"][key] if n not in ns and f"gist{n}" not in per]
        if bad:
            raise ConfigError(f"eval.{key}: {bad} not in gist.n_tokens {ns}" + (f" nor the chunk-wise methods {per}" if per else ""))
    bad = [n for n in config["eval"]["rag_gist"] if n not in ns]
    if bad:
        raise ConfigError(f"eval.rag_gist: {bad} not in gist.n_tokens {ns} (the hybrid answers from a trained gist-N)")
    if config["sources"].get("debian_docs") and config["gist"]["pretrained"] != "train":
        raise ConfigError("sources.debian_docs: the text at volume feeds stage 1 only; set gist.pretrained: train, or remove it")
    data = config["data"]
    if data["min_tokens"] >= data["max_tokens"]:
        raise ConfigError(
            f"data.min_tokens ({data['min_tokens']}) must be below data.max_tokens ({data['max_tokens']})"
        )
    return config


SOURCE_KEYS = ("wikipedia_xml", "wikitext_raw", "arxiv_metadata", "unarxive", "techdocs_dirs")


def check_sources(config: dict, root: str | Path = ".") -> None:
    """Every raw input the config names exists (relative paths from ``root``, the workflow's folder).

    Raises ConfigError naming the key and the path, e.g. ``sources.wikitext_raw[0]: no such file: ...``, so a
    missing dump stops the run at start-up instead of as a traceback from the rule that hashes it.
    """
    missing = []
    for key in SOURCE_KEYS:
        for i, path in enumerate(config["sources"].get(key, [])):
            full = Path(path) if Path(path).is_absolute() else Path(root) / path
            if not full.exists():
                kind = "folder" if key.endswith("_dirs") else "file"
                missing.append(f"sources.{key}[{i}]: no such {kind}: {path}")
    debian = config["sources"].get("debian_docs")
    if debian and not (Path(root) / debian["lock"]).exists():   # an absolute lock path stays as it is
        missing.append(f"sources.debian_docs.lock: no such file: {debian['lock']}")
    pretrained = config["gist"]["pretrained"]
    if pretrained not in ("train", "none"):
        folder = Path(pretrained) if Path(pretrained).is_absolute() else Path(root) / pretrained
        for n in config["gist"]["n_tokens"]:
            for name in ("adapter_model.safetensors", "provenance.json"):
                if not (folder / f"gist{n}" / name).exists():
                    missing.append(f"gist.pretrained: no such file: {pretrained}/gist{n}/{name}")
    if missing:
        raise ConfigError("missing input:\n  " + "\n  ".join(missing) + "\n(fix the path in the config, or remove the entry)")


def merged_train(train: dict, overrides: dict) -> dict:
    """The train section with an ablation's overrides applied (nested sections merged key by key)."""
    out = copy.deepcopy(train)
    for k, v in overrides.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it; errors name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        return validate_config(raw or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def publish_dir(config: dict) -> str:
    """Where the ``publish`` rule writes a run's folder: ``publish_dir``, else ``docs/results/<run_name>``."""
    return config["publish_dir"] or f"docs/results/{config['run_name']}"
