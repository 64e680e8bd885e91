# All the Python of the workflow: config validation, wildcard constraints and input helpers.
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

from gistpoc.codehash import code_hash, files_hash
from gistpoc.config import (
    ConfigError,
    check_sources,
    merged_train,
    publish_dir,
    validate_config,
)
from gistpoc.data.sources.debian import deb_paths
from gistpoc.methods import checkpoint_key, configured
from gistpoc.methods import parse as parse_method

try:
    config.update(validate_config(config))
    check_sources(
        config
    )  # raw inputs: relative to the working directory, like every rule path
except ConfigError as err:
    raise WorkflowError(str(err))


N_GIST = sorted(config["gist"]["n_tokens"])
# gist.chunked: one more checkpoint, gist<N>chunked, trained in the chunk-wise layout over every listed chunk size and
# answering as gist<N>per<C> for each (gistpoc.methods.checkpoint_key); the {n} wildcard of the gist rules is a
# checkpoint key (25, 16chunked) or, in the evaluation rules, a method's (25, 16per512)
CHUNKED = config["gist"]["chunked"]
GIST_KEYS = [str(n) for n in N_GIST] + (
    [f"{CHUNKED['n']}chunked"] if CHUNKED["chunk_tokens"] else []
)
# torch jobs (training, compression, embedding): Snakemake sets OMP_NUM_THREADS / MKL_NUM_THREADS to a job's threads
# and torch sizes its pool from them. The DAG has many small torch jobs, so one thread per job until cores outnumber
# them (a quarter of the cores, at most 4): on 2 cores a second thread makes a training job 1.69x faster, but two
# one-thread jobs side by side do 2x the work, and a two-thread job would leave a core idle while a one-thread
# evaluation runs beside it
TORCH_THREADS = max(1, min(int(workflow.cores or 1) // 4, 4))
# evaluation is decode-bound (one-token forwards): on this project's 2-core machine a second thread makes one job only
# 1.17x faster, while two one-thread jobs side by side give 1.28x the throughput (training and compression are
# compute-bound: 1.69x from a second thread), so evaluations take one core each and run two at a time
EVAL_THREADS = 1
SPLITS = ["train", "val", "test"]
BUDGET = config["eval"]["budget"]
# every method the config evaluates (gistpoc.methods: names are parsed there only); the matched-budget baselines (one job:
# they share one pass per document) and the RAG + gist hybrid
METHODS = configured(config)
BUDGET_METHODS = [m for m in METHODS if parse_method(m).kind == "budget"]
RAG_GIST = [m for m in METHODS if parse_method(m).kind == "hybrid"]
BUDGET_QTYPES_ARG = f"--qtypes {' '.join(BUDGET['qtypes'])}" if BUDGET["qtypes"] else ""
# extra gist checkpoints with other train settings (the recipe ablation), evaluated on the passkey items
ABLATIONS = {a["name"]: a for a in config["ablations"]}


wildcard_constraints:
    n=r"\d+(chunked|per\d+)?",
    split="|".join(SPLITS),
    method="|".join(METHODS),
    ablation="|".join(ABLATIONS) or "no-ablations",


# Reruns are decided by content, not mtimes (a copied tree gives every file a new mtime): each rule's code enters
# as a param (`script_code`: its script and the gistpoc modules it imports, transitively); inputs no rule makes
# (raw dumps, shipped adapters, the rating sheet) are `ancient` and their content enters as the `sources` param;
# directories made in the DAG (model, checkpoints, adapters) are `ancient` too, since when their job reruns, Snakemake
# reruns what reads them anyway; files a rule makes keep Snakemake's mtime check, which the profile's
# max-checksum-file-size turns into a content check (a newer file with the recorded checksum is not a change).
MODEL = ancient("results/model/base")
# ... but a directory's mtime says nothing and `ancient` stops Snakemake from rerunning what reads a remade one, so
# each directory made in the DAG comes with a manifest file beside it (`<dir>.sha256`: sha256 of every file in it),
# a normal input of every reader: a remade directory with new content reruns its readers, a copy does not.
MODEL_SUM = "results/model/base.sha256"


def manifest(folder):
    return f"{folder}.sha256"


def script_code(name, exclude=()):
    """Content hash of scripts/<name>.py and the gistpoc modules it imports (a param of the rule running it)."""
    return code_hash(f"scripts/{name}.py", exclude)


# the Q&A backends' modules: generate_qa's code param follows only the backend the config uses, so that e.g. a metric
# the LLM writer's leakage filter uses does not regenerate grounded questions
QA_BACKEND_CODE = {
    "grounded": "gistpoc/qa/grounded.py",
    "openai": "gistpoc/qa/llm_questions.py",
    "local": "gistpoc/qa/local_backend.py",
}


def qa_code():
    backend = config["qa"]["backend"]
    return script_code(
        "generate_qa",
        [m for b, m in QA_BACKEND_CODE.items() if b != backend]
        + (["gistpoc/qa/openai_backend.py"] if backend == "grounded" else []),
    )


def external(paths):
    """Inputs no rule makes, as ancient inputs (their content is hashed by `ext_hash` into the `sources` param)."""
    return [ancient(p) for p in ([paths] if isinstance(paths, str) else paths)]


def ext_hash(paths):
    """Content hash of the given inputs that live outside results/ (made by no rule), '' if none. Computed from
    the config and wildcards when the DAG is built (a params function of `input` did not trigger reruns).
    """
    ext = [str(f) for f in paths if not str(f).startswith("results/")]
    return files_hash(ext) if ext else ""


def section(name):
    """A config section as canonical JSON: a param that changes exactly when the section does."""
    return json.dumps(config[name], sort_keys=True)


def eval_model_section():
    """The model section as the answering rules load it: ``eval.quantization`` (unless ``model``) replaces
    ``model.quantization`` there, so training keeps its own format and only the evaluations rerun.
    """
    m = dict(config["model"])
    if config["eval"].get("quantization", "model") != "model":
        m["quantization"] = config["eval"]["quantization"]
        m["int4_group_size"] = config["eval"]["int4_group_size"]
    return json.dumps(m, sort_keys=True)


def get_extract_inputs(kind):
    src = config["sources"]
    return {
        "wikipedia": src["wikipedia_xml"] + src["wikitext_raw"],
        "arxiv": src["arxiv_metadata"] + src["unarxive"],
        "techdocs": src["techdocs_dirs"],
        "hf": [],
    }[kind]


def source_kinds():
    src = config["sources"]
    kinds = []
    if src["wikipedia_xml"] or src["wikitext_raw"]:
        kinds.append("wikipedia")
    if src["arxiv_metadata"] or src["unarxive"]:
        kinds.append("arxiv")
    if src["techdocs_dirs"]:
        kinds.append("techdocs")
    if src["hf_datasets"]:
        kinds.append("hf")
    return kinds


# sources.debian_docs: stage 1's text at volume (Debian documentation packages), or None
DEBIAN = config["sources"]["debian_docs"]


def debian_debs():
    """The locked .deb files (fetched by fetch_debian_docs where they are missing)."""
    return deb_paths(DEBIAN["lock"], DEBIAN["dir"]) if DEBIAN else []


def volume_input(wildcards=None):
    """Stage 1's text at volume, when the config names one."""
    return ["results/data/volume/train.jsonl"] if DEBIAN else []


def volume_arg(wildcards, input):
    return " ".join(f"--volume {p}" for p in input.volume)


def get_extracted(wildcards=None):
    return [f"results/data/extracted/{k}.jsonl" for k in source_kinds()]


def get_dataset(split, n):
    return f"results/dataset/{split}.gist{n}.jsonl"


def get_eval_dataset(wildcards=None):
    """Baselines answer the same test questions as every gist-N (the smallest N's file)."""
    return get_dataset("test", N_GIST[0])


def get_predictions(wildcards=None):
    return [f"results/eval/{m}/predictions.jsonl" for m in METHODS]


def get_environments(wildcards=None):
    return [f"results/eval/{m}/environment.json" for m in METHODS]


def n_of(key):
    """N of a gist key: 25 -> 25, 16chunked -> 16, 16per512 -> 16."""
    return int(re.match(r"\d+", str(key))[0])


def dataset_of(split):
    """The {n} wildcard's records: the gist-N dataset (the chunk-wise layout is encoded from its contexts)."""
    return lambda wildcards: get_dataset(split, n_of(wildcards.n))


def chunk_arg(wildcards):
    """A chunk-wise checkpoint's training chunk sizes (gist.chunked.chunk_tokens), '' for a whole-document one."""
    if not str(wildcards.n).endswith("chunked"):
        return ""
    return "--chunk-tokens " + " ".join(str(c) for c in CHUNKED["chunk_tokens"])


def get_self_study(wildcards=None):
    """self_study.prompts: the base model's answers about the training documents, stage 2's extra segments."""
    return ["results/self_study/train.jsonl"] if config["self_study"]["prompts"] else []


def self_study_arg(wildcards, input):
    return f"--extra-train {input.self_study}" if input.self_study else ""


def checkpoint_dir(wildcards):
    """The checkpoint the {n} wildcard's method answers from (gist16per512 -> results/checkpoints/gist16chunked)."""
    return f"results/checkpoints/{checkpoint_key(f'gist{wildcards.n}')}"


def get_checkpoint(wildcards):
    return ancient(checkpoint_dir(wildcards))


def get_checkpoint_sum(wildcards):
    return manifest(checkpoint_dir(wildcards))


def ablation_train(wildcards):
    """The ablation's train section (the run's, with its overrides), as canonical JSON."""
    ab = ABLATIONS[wildcards.ablation]
    return json.dumps(merged_train(config["train"], ab["train"]), sort_keys=True)


def pretrained_dir(setting, n):
    """gist.pretrained -> the stage-1 adapter folder for gist-N ('' for none)."""
    if setting == "none":
        return ""
    return (
        f"results/pretrained/gist{n}"
        if setting == "train"
        else f"{setting.rstrip('/')}/gist{n}"
    )


def pretrained_inputs(setting, n):
    folder = pretrained_dir(setting, n)
    if not folder or setting == "train":
        return [ancient(folder), manifest(folder)] if folder else []
    return external(
        [f"{folder}/adapter_model.safetensors", f"{folder}/provenance.json"]
    )  # a shipped adapter: its files


def get_pretrained(wildcards):
    return pretrained_inputs(config["gist"]["pretrained"], wildcards.n)


def pretrained_flag(setting, n):
    folder = pretrained_dir(setting, n)
    return f"--pretrained {folder}" if folder else ""


def pretrained_arg(wildcards):
    return pretrained_flag(config["gist"]["pretrained"], wildcards.n)


def ablation_setting(wildcards):
    ab = ABLATIONS[wildcards.ablation]
    return ab.get("pretrained", config["gist"]["pretrained"]), ab["n_tokens"]


def get_ablation_pretrained(wildcards):
    return pretrained_inputs(*ablation_setting(wildcards))


def ablation_pretrained_arg(wildcards):
    return pretrained_flag(*ablation_setting(wildcards))


def get_all_pretrained(wildcards=None):
    """The stage-1 adapter files of every gist-N (for the report), [] with gist.pretrained: none."""
    return [
        f for n in GIST_KEYS for f in pretrained_inputs(config["gist"]["pretrained"], n)
    ]


def pretrained_report_arg(wildcards=None):
    folders = [pretrained_dir(config["gist"]["pretrained"], n) for n in GIST_KEYS]
    return f"--pretrained {' '.join(folders)}" if all(folders) else ""


WARM_FROM = {w["n"]: w["from"] for w in config["gist"]["warm_start"]}


def warm_from(wildcards):
    """gist.warm_start's ``from`` for gist-N (None for none, and for a chunk-wise checkpoint: it has no warm start)."""
    return WARM_FROM.get(int(wildcards.n)) if str(wildcards.n).isdigit() else None


def warm_dir(wildcards):
    """gist.warm_start: the stage-1 adapter folder gist-N starts from ('' for none): another N's stage 1 here,
    or <folder>/gist<N> made elsewhere (continued)."""
    m = warm_from(wildcards)
    if m is None:
        return ""
    return (
        f"results/pretrained/gist{m}"
        if isinstance(m, int)
        else pretrained_dir(m, wildcards.n)
    )


def get_warm_start(wildcards):
    """Stage 1 of a warm-started gist-N needs the adapter it starts from."""
    m = warm_from(wildcards)
    if m is None:
        return []
    return (
        [ancient(warm_dir(wildcards)), manifest(warm_dir(wildcards))]
        if isinstance(m, int)
        else pretrained_inputs(m, wildcards.n)
    )


def warm_start_arg(wildcards):
    folder = warm_dir(wildcards)
    return f"--warm-start {folder}" if folder else ""


def pretrain_train():
    """The train section with the pretrain: overrides (stage 1), as canonical JSON."""
    return json.dumps(merged_train(config["train"], config["pretrain"]), sort_keys=True)


def ablation_n(wildcards):
    return ABLATIONS[wildcards.ablation]["n_tokens"]


def get_ablation_dataset(split):
    def by_ablation(wildcards):
        return get_dataset(split, ABLATIONS[wildcards.ablation]["n_tokens"])

    return by_ablation


def get_ablation_checkpoints(wildcards=None):
    return [ancient(f"results/ablations/{a}/checkpoint") for a in ABLATIONS]


def get_ablation_checkpoint_sums(wildcards=None):
    return [manifest(f"results/ablations/{a}/checkpoint") for a in ABLATIONS]


def get_ablation_predictions(wildcards=None):
    return [f"results/ablations/{a}/predictions.jsonl" for a in ABLATIONS]


def ablations_arg(wildcards, input):
    if not input.ablation_checkpoints:
        return ""
    return f"--ablation-checkpoints {input.ablation_checkpoints} --ablation-predictions {input.ablation_predictions}"


def get_judgments(wildcards=None):
    return (
        "results/eval/judgments.jsonl"
        if config["eval"]["judge"]["backend"] == "openai"
        else []
    )


# hand-labelled answers the judge is calibrated on (resources/judge/README.md)
JUDGE_FIXTURE = "resources/judge/calibration.jsonl"


def get_judge_calibration(wildcards=None):
    return (
        "results/eval/judge_calibration.json"
        if config["eval"]["judge"]["backend"] == "openai"
        else []
    )


def judgments_arg(wildcards, input):
    return f"--judgments {input.judgments}" if input.judgments else ""


def get_rag_manifest(wildcards):
    return "results/rag/index.json" if wildcards.method == "rag" else []


def rag_manifest_arg(wildcards, input):
    return f"--rag-manifest {input.rag}" if input.rag else ""


def get_ratings(wildcards=None):
    """The filled human rating sheet, when the user has put one at eval.ratings_csv."""
    path = config["eval"]["ratings_csv"]
    return external(path) if Path(path).exists() else []


def ratings_arg(wildcards, input):
    return f"--ratings {input.ratings}" if input.ratings else ""


def scaled(base):
    """A resource that grows with the attempt (retries after OOM / timeout get more)."""

    def by_attempt(wildcards, attempt):
        return base * attempt

    return by_attempt


# the controls: gist-N answering from the gist of its document with the tokens shuffled (eval.scramble_control), or
# from another test document's gist (eval.other_doc_control); the flag each passes to evaluate_method.py
CONTROL_FLAGS = {"scrambled": "--scramble-context", "otherdoc": "--other-document"}
CONTROL_KEYS = {"scrambled": "scramble_control", "otherdoc": "other_doc_control"}


def control_flag(wildcards):
    return CONTROL_FLAGS[wildcards.control]


def get_control_predictions(wildcards=None):
    """Every configured control's predictions (eval.scramble_control, eval.other_doc_control)."""
    return [
        f"results/controls/gist{n}_{control}/predictions.jsonl"
        for control, key in CONTROL_KEYS.items()
        for n in config["eval"][key]
    ]


def controls_arg(wildcards, input):
    return f"--controls {input.controls}" if input.controls else ""


ENGINE_CHECK = config["eval"]["engine_check"]


def get_engine_check_answers(wildcards=None):
    """eval.engine_check: the eager engine's answers of these baselines (compared with the run's own)."""
    return [f"results/engine_check/{m}.eager.jsonl" for m in ENGINE_CHECK]


def get_stage1_targets(wildcards=None):
    """Stage 1 of every gist-N (when this run trains it) and the ablation checkpoints: the GPU's first phase."""
    pre = (
        [f"results/pretrained/gist{n}" for n in GIST_KEYS]
        + [manifest(f"results/pretrained/gist{n}") for n in GIST_KEYS]
        if config["gist"]["pretrained"] == "train"
        else []
    )
    return pre + [manifest(f"results/ablations/{a}/checkpoint") for a in ABLATIONS]


def get_baseline_targets(wildcards=None):
    """Methods that need the base model only: closed book, full context, RAG, the matched-budget baselines."""
    return [
        f"results/eval/{m}/predictions.jsonl"
        for m in ["closed_book", "full_context", "rag"] + BUDGET_METHODS
    ]


def get_gist_targets(wildcards=None):
    """Everything that reads a trained gist checkpoint: gist-N, the hybrid, the controls, the ablations' answers."""
    return (
        [
            f"results/eval/{m}/predictions.jsonl"
            for m in METHODS
            if parse_method(m).kind == "gist"
        ]
        + [f"results/eval/{m}/predictions.jsonl" for m in RAG_GIST]
        + get_control_predictions()
        + get_ablation_predictions()
    )


def get_engine_check_targets(wildcards=None):
    return ["results/engine_check/engine_check.json"] if ENGINE_CHECK else []


def publish_list_arg(name):
    """`--<name> <files>` from the publish rule's input of that name ('' when the run has none)."""
    flag = f"--{name.replace('_', '-')}"

    def arg(wildcards, input):
        files = input[name] if name in input.keys() else []
        # one named file, or a list of them
        files = [str(files)] if isinstance(files, str) else [str(f) for f in files]
        return f"{flag} {' '.join(files)}" if files else ""

    return arg


def pretrained_publish_arg(wildcards=None):
    """Stage 1's adapter folders (its logs and provenance) when this run trained it."""
    if config["gist"]["pretrained"] != "train":
        return ""
    return "--pretrained " + " ".join(f"results/pretrained/gist{n}" for n in GIST_KEYS)


def qa_output(path):
    """Q&A bought from an endpoint (qa.backend: openai) is write-protected: a rerun stops before replacing it
    (delete it on purpose to regenerate; the per-request cache still answers repeated calls for free).
    """
    return protected(path) if config["qa"]["backend"] == "openai" else path
