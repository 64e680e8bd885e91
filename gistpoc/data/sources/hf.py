"""Hugging Face datasets (any text + title columns)."""

from __future__ import annotations

from typing import Iterator

from gistpoc.data.sources.common import document
from gistpoc.utils import IssueLog


def iter_hf_dataset(spec: dict, issues: IssueLog) -> Iterator[dict]:
    """Rows of a Hugging Face dataset (local files such as parquet, or a hub id) as documents."""
    import datasets

    kwargs = {"split": spec.get("split", "train")}
    if spec.get("data_files"):
        kwargs["data_files"] = spec["data_files"]
    ds = datasets.load_dataset(spec["path"], **kwargs)
    text_field, title_field = spec.get("text_field", "text"), spec.get("title_field", "title")
    if text_field not in ds.column_names:
        raise KeyError(f"sources.hf_datasets[{spec['name']}]: column {text_field!r} not in {ds.column_names}")
    for i, row in enumerate(ds):
        if i >= spec.get("max_records", 1000):
            break
        text = (row.get(text_field) or "").strip()
        title = str(row.get(title_field) or f"{spec['name']} {i}")
        if not text:
            issues.add(spec["path"], i, "empty page: empty text field")
            continue
        yield document(
            doc_id=f"{spec['name']}:{row.get('id', i)}",
            source=spec.get("source", "wikipedia"),
            collection=spec["name"],
            title=title,
            text=text if text.startswith("#") else f"# {title}\n\n{text}",
            url=str(row.get("url", "")),
            license="see dataset card",
            attribution=f'"{title}" from Hugging Face dataset {spec["path"]}.',
            meta={"row": i},
        )
