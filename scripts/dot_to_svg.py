#!/usr/bin/env python
"""Render Snakemake's --rulegraph/--dag output (on stdin; log lines before the graph are skipped) to SVG with graphviz."""

import argparse
import subprocess
import sys

from gistpoc.utils import atomic_path


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    text = sys.stdin.read()
    start = text.find("digraph")
    if start < 0:
        sys.exit("no graph in the input: " + text[-500:])
    svg = subprocess.run(["dot", "-Tsvg"], input=text[start:], capture_output=True, text=True, check=True).stdout
    with atomic_path(args.out, suffix=".svg") as tmp:
        tmp.write_text(svg)


if __name__ == "__main__":
    main()
