"""What every ``scripts/<rule>.py`` shares: a --log flag, logging set-up and clear failure messages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from typing import Callable

from gistpoc.utils import setup_logging

log = logging.getLogger("gistpoc")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--log", default=None, help="log file (the rule's log:)")
    p.add_argument("--debug", action="store_true", help="re-raise errors (a debugger or pytest sees them) after logging them")
    return p


def training_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments stage 1 (scripts/pretrain_gist.py) and stage 2 (scripts/train_gist.py) share."""
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--model-ref", required=True)
    p.add_argument("--train-cfg", type=json_arg, required=True, help="the train: section (stage 1: with the pretrain: overrides), as JSON")
    p.add_argument("--train", required=True, help="the gist-N training records (only the training split is read)")
    p.add_argument("--n-gist", type=int, required=True)
    p.add_argument("--instruction", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--manifest", default="", help="write the sha256 of every file in --out-dir here (the rule's <dir>.sha256)")
    p.add_argument("--state-dir", required=True, help="resumable state, kept outside the rule's outputs")
    p.add_argument("--passkey-digits", type=int, required=True, help="data.passkey_digits: length of the stream's keys")
    return p


def required(p: argparse.ArgumentParser, *flags: str) -> argparse.ArgumentParser:
    """Required string options (paths, names), one line for a script's list of them."""
    for flag in flags:
        p.add_argument(flag, required=True)
    return p


def eval_items(args: argparse.Namespace) -> list[dict]:
    """An evaluation script's start: the seed set, the test split's records (``--dataset``), only ``--qtypes`` when given."""
    from gistpoc.utils import read_jsonl, seed_everything

    seed_everything(args.seed)
    records = read_jsonl(args.dataset)
    return [r for r in records if r["qtype"] in args.qtypes] if args.qtypes else records


def json_arg(text: str) -> dict:
    """Parse a JSON config section given on the command line (Snakemake passes sections as params)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err


def run(main: Callable[[argparse.Namespace], None], p: argparse.ArgumentParser) -> None:
    args = p.parse_args()
    setup_logging(args.log)
    try:
        main(args)
    except KeyboardInterrupt:
        log.error("interrupted; rerun the rule to resume")
        sys.exit(130)
    except Exception as err:  # one clear line first, then the full traceback: both land in the rule's log
        log.error("%s: %s", type(err).__name__, err)
        log.error("full traceback:\n%s", traceback.format_exc().rstrip())
        if args.debug:
            raise
        sys.exit(1)
