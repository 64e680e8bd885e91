#!/usr/bin/env python
"""Extract one source kind from raw dumps into documents JSONL (+ an issues report).

Kinds: wikipedia (MediaWiki XML and WikiText raw), arxiv (Kaggle metadata and unarXive),
techdocs (folders of reST/Markdown/HTML), hf (Hugging Face datasets, local files or hub ids).
"""

import logging

from tqdm import tqdm

from gistpoc.cli import json_arg, parser, run
from gistpoc.data import extract as E
from gistpoc.utils import IssueLog, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    issues = IssueLog()
    docs = []
    jobs = (
        [(E.iter_mediawiki_xml, p) for p in args.wikipedia_xml]
        + [(E.iter_wikitext_raw, p) for p in args.wikitext_raw]
        + [(E.iter_arxiv_metadata, p) for p in args.arxiv_metadata]
        + [(E.iter_unarxive, p) for p in args.unarxive]
        + [(E.iter_techdocs, p) for p in args.techdocs_dir]
        + [(E.iter_hf_dataset, spec) for spec in (args.hf or [])]
    )
    for fn, src in jobs:
        before = len(docs)
        for doc in tqdm(fn(src, issues), desc=str(src if isinstance(src, str) else src["name"])[-60:], mininterval=5):
            docs.append(doc)
        log.info("%s: %d documents", src, len(docs) - before)
    docs.sort(key=lambda d: d["doc_id"])
    by_id: dict[str, dict] = {}
    for d in docs:  # the same id twice within one kind (e.g. a paper in two files): keep the longer
        prev = by_id.get(d["doc_id"])
        if prev is not None:
            if len(d["text"]) > len(prev["text"]):
                by_id[d["doc_id"]] = d
            issues.add(d["collection"], d["doc_id"], "duplicate id: kept the longer text")
            continue
        by_id[d["doc_id"]] = d
    unique = list(by_id.values())
    n = write_jsonl(args.out, unique)
    write_json(args.issues, {"n_documents": n, **issues.to_dict()})
    log.info("wrote %d documents to %s (%d inputs skipped)", n, args.out, len(issues.items))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--wikipedia-xml", nargs="*", default=[])
    p.add_argument("--wikitext-raw", nargs="*", default=[])
    p.add_argument("--arxiv-metadata", nargs="*", default=[])
    p.add_argument("--unarxive", nargs="*", default=[])
    p.add_argument("--techdocs-dir", nargs="*", default=[])
    p.add_argument("--hf", type=json_arg, default=None, help="JSON list of sources.hf_datasets entries")
    p.add_argument("--out", required=True)
    p.add_argument("--issues", required=True)
    run(main, p)
