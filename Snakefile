# Gist-token context compression vs RAG vs full context: the experiment as a Snakemake DAG.
# Run: snakemake --cores 1 results/report.html   (see README.md)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/gist.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/publish.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
