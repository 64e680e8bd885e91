"""``python -m gistpoc.methods NAME...`` / ``--config FILE`` (see the package's docstring). The config's validation is
imported here, not in the package: the scripts import ``gistpoc.methods`` and never this file, so their code hash
(gistpoc.codehash) does not follow gistpoc.config and its schema, and a new config key reruns no evaluation."""

import sys

from gistpoc.config import load_config
from gistpoc.methods import main

main(sys.argv[1:], load_config)
