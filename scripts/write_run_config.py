#!/usr/bin/env python
"""Write the configuration of this run (as Snakemake merged it, defaults filled) for the report."""

import json

import yaml

from gistpoc.cli import parser, run
from gistpoc.utils import write_text_atomic


def main(args):
    write_text_atomic(args.out, yaml.safe_dump(json.loads(args.config), sort_keys=False))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--config", required=True, help="the whole config as JSON")
    p.add_argument("--out", required=True)
    run(main, p)
