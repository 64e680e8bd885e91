#!/usr/bin/env python
"""Extract the documentation pages of the locked Debian packages (sources.debian_docs: stage 1's text at volume)
from their .deb files into documents JSONL (+ an issues report). Every .deb is checked against the lock's sha256."""

import logging

from gistpoc.cli import parser, run
from gistpoc.data.sources.debian import iter_locked
from gistpoc.utils import IssueLog, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    issues = IssueLog()
    docs = sorted(iter_locked(args.lock, args.dir, issues), key=lambda d: d["doc_id"])
    bad = [i for i in issues.items if "unreadable package" in i["reason"]]
    if bad:  # a missing or altered package would silently shrink stage 1's text: stop instead
        raise RuntimeError("; ".join(f"{i['file']}: {i['reason']}" for i in bad))
    n = write_jsonl(args.out, docs)
    write_json(args.issues, {"n_documents": n, **issues.to_dict()})
    log.info("wrote %d pages to %s (%d inputs skipped)", n, args.out, len(issues.items))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--lock", required=True, help="sources.debian_docs.lock")
    p.add_argument("--dir", required=True, help="sources.debian_docs.dir: the folder holding the .deb files")
    p.add_argument("--out", required=True)
    p.add_argument("--issues", required=True)
    run(main, p)
