"""Broken adapters, each tried with every command that reads adapters: one rule, one message, everywhere."""

from bad_input_table import (
    adapter,
    case,
    drop_b,
    empty_adapter,
    folder,
    halve_rank,
    pickle_only,
    poison,
    rename,
    widen_input,
    with_config,
    write,
)

# (name, setup, what the error names)
BROKEN = [
    ("rank-vs-config", adapter("r16", config=with_config(r=16)), ("r16", "says r=16", "rank 4")),
    ("rank-a-vs-b", adapter("mismatch", tensors=halve_rank), ("mismatch", "lora_A has rank 2", "lora_B has rank 4")),
    ("nan-values", adapter("nan", tensors=poison("lora_B", float("nan"))), ("nan", "NaN or Inf")),
    ("inf-values", adapter("inf", tensors=poison("lora_A", float("inf"))), ("inf", "NaN or Inf")),
    ("no-tensors", empty_adapter, ("empty", "no tensors")),
    ("half-a-pair", adapter("half", tensors=drop_b), ("half", "incomplete", "no lora_B")),
    ("wider-base", adapter("wide", tensors=widen_input), ("wide", "input size is 96 in the adapter and 64 in the base")),
    ("deeper-base", adapter("deep", tensors=rename("layers.1.", "layers.5.")), ("deep", "layer 5", "2 layers")),
    ("other-architecture", adapter("gpt2ish", tensors=rename("q_proj", "c_attn")), ("gpt2ish", "'c_attn'", "does not have")),
    ("base-signature", adapter("signed", files={"lorakit_base.json": '{"hidden_size": 4096}'}), ("hidden_size 4096", "hidden_size 64")),
    ("config-not-json", adapter("badjson", config=lambda c: "{not json"), ("badjson", "not valid JSON")),
    ("config-not-object", adapter("listcfg", config=lambda c: [c]), ("listcfg", "not a JSON object")),
    ("not-a-lora", adapter("prefix", config=with_config(peft_type="PREFIX_TUNING")), ("PREFIX_TUNING", "not a LoRA")),
    ("no-weights", adapter("noweights", remove=("adapter_model.safetensors",)), ("noweights", "no weights")),
    ("pickle-without-opt-in", pickle_only(), ("pickle", "--allow-pickle")),
    ("folder-without-config", folder("plain", {"notes.txt": "hello"}), ("plain", "not a LoRA adapter folder")),
]

EVIL = [("pickle-with-code", pickle_only(evil=True), ("evil", "more than plain tensors"))]

COMMANDS = {
    "generate": lambda path: ["generate", "{model}", "--lora", path, "--prompt", "hi", "--greedy"],
    "apply": lambda path: ["apply", "{model}", "--lora", path],
    "eval": lambda path: ["eval", "{model}", "--lora", path, "--dataset", "{text}", "--max-length", "16"],
    "merge": lambda path: ["merge", "{model}", "--lora", path, "--output", "{tmp}/merged"],
}
FOLDERS = {"rank-vs-config": "r16", "rank-a-vs-b": "mismatch", "nan-values": "nan", "inf-values": "inf", "no-tensors": "empty",
           "half-a-pair": "half", "wider-base": "wide", "deeper-base": "deep", "other-architecture": "gpt2ish", "base-signature": "signed",
           "config-not-json": "badjson", "config-not-object": "listcfg", "not-a-lora": "prefix", "no-weights": "noweights",
           "pickle-without-opt-in": "pickled", "folder-without-config": "plain", "pickle-with-code": "evil"}

CASES = []
for name, setup, expect in BROKEN:
    for command, argv in COMMANDS.items():
        CASES.append(case(f"{command}-adapter-{name}", *argv("{tmp}/" + FOLDERS[name]), expect=expect, setup=setup))
for name, setup, expect in EVIL:
    for command, argv in COMMANDS.items():
        CASES.append(case(f"{command}-adapter-{name}", *argv("{tmp}/" + FOLDERS[name]), "--allow-pickle", expect=expect, setup=setup))

# Combining adapters reads them the same way.
CASES += [
    case("merge-adapters-only-nan", "merge", "--adapters-only", "{lora}", "{tmp}/nan", "--output", "{tmp}/combined",
         expect=("nan", "NaN or Inf"), setup=adapter("nan", tensors=poison("lora_B", float("nan")))),
    case("merge-adapters-only-rank", "merge", "--adapters-only", "{lora}", "{tmp}/r16", "--output", "{tmp}/combined",
         expect=("says r=16",), setup=adapter("r16", config=with_config(r=16))),
    case("apply-lora-is-a-file", "apply", "{model}", "--lora", "{tmp}/notes.txt", expect="is a file, not an adapter folder",
         setup=write("notes.txt", "hello")),
    case("apply-lora-missing", "apply", "{model}", "--lora", "{tmp}/nowhere", expect=("nowhere", "not found")),
    case("generate-lora-repo-id-missing", "generate", "{model}", "--lora", "someorg/somelora", "--prompt", "x",
         expect=("not downloaded", "HF_HUB_OFFLINE=1", "lorakit download someorg/somelora")),
]
