"""eval: datasets, windows, --compare, LoRAs, loaders, environment."""

from bad_input_table import case, write

EV = ("eval", "{model}")
CASES = [
    case("eval-no-dataset", *EV, expect="--dataset is required", code=2),
    case("eval-dataset-missing", *EV, "--dataset", "{tmp}/none.txt", expect=("none.txt", "not found"), code=2),
    case("eval-history-with-dataset", *EV, "--history", "--dataset", "{text}", expect="--history prints the evaluations log", code=2),
    case("eval-batch-size-zero", *EV, "--dataset", "{text}", "--batch-size", "0", expect="--batch-size must be at least 1", code=2),
    case("eval-max-length-one", *EV, "--dataset", "{text}", "--max-length", "1", expect="--max-length must be at least 2", code=2),
    case("eval-stride-zero", *EV, "--dataset", "{text}", "--max-length", "16", "--stride", "0", expect="--stride must be at least 1", code=2),
    case("eval-stride-longer-than-window", *EV, "--dataset", "{text}", "--max-length", "16", "--stride", "32", expect="--stride", code=2),
    case("eval-max-length-beyond-context", *EV, "--dataset", "{text}", "--max-length", "4096", expect="4096", code=2),
    case("eval-folder-without-txt", *EV, "--dataset", "{tmp}/docs", expect="has no .txt files", setup=write("docs/readme.md", "# x")),
    case("eval-text-field-on-txt", *EV, "--dataset", "{text}", "--text-field", "body", expect="apply to JSON/JSONL rows", code=2),
    case("eval-text-field-missing-in-rows", *EV, "--dataset", "{tmp}/rows.jsonl", "--text-field", "body", "--max-length", "8",
         expect=("line 1", "has no field 'body'"), code=2, setup=write("rows.jsonl", '{"text": "hello there"}\n')),
    case("eval-rows-bad-json", *EV, "--dataset", "{tmp}/rows.jsonl", "--max-length", "8", expect=("line 2", "not valid JSON"),
         setup=write("rows.jsonl", '{"text": "a"}\n{oops\n')),
    case("eval-dataset-empty", *EV, "--dataset", "{tmp}/empty.txt", "--max-length", "8", expect="is empty", setup=write("empty.txt", "")),
    case("eval-dataset-shorter-than-window", *EV, "--dataset", "{tmp}/short.txt", "--max-length", "256", expect="fewer than one window",
         code=2, setup=write("short.txt", "Just a few words.")),
    case("eval-dataset-not-utf8", *EV, "--dataset", "{tmp}/latin.txt", "--max-length", "8", expect="not UTF-8", setup=write("latin.txt", b"caf\xe9 " * 40)),
    case("eval-format-unknown", *EV, "--dataset", "{rows}", "--format", "nosuchformat", "--max-length", "8", expect="unknown format 'nosuchformat'", code=2),
    case("eval-compare-empty-item", *EV, "--dataset", "{text}", "--compare", "base,,x", expect="has an empty item", code=2),
    case("eval-compare-unknown-lora", *EV, "--dataset", "{text}", "--compare", "base,ghost", expect=("ghost", "not found")),
    case("eval-compare-weight-inf", *EV, "--dataset", "{text}", "--lora", "{lora}", "--compare", "tiny-lora:1e999",
         expect="not a finite number", code=2),
    case("eval-compare-same-lora-twice", *EV, "--dataset", "{text}", "--lora", "{lora}", "--compare", "tiny-lora+tiny-lora:0.5",
         expect=("names the LoRA", "twice"), code=2),
    case("eval-lora-twice", *EV, "--dataset", "{text}", "--lora", "{lora}", "--lora", "{lora}", expect="twice", code=2),
    case("eval-loader-unknown", *EV, "--dataset", "{text}", "--loader", "nope", expect="unknown loader 'nope'", code=2),
    case("eval-home-is-a-file", *EV, "--dataset", "{text}", expect="is a file, not a folder",
         env={"LORAKIT_HOME": "{tmp}/home-file"}, setup=write("home-file", "x")),
]
