"""train: every parameter refused before any work (nothing written), data, formats, configs, outputs."""

import json

from bad_input_table import case, folder, lora_in_home, write

T = ("train", "{model}", "--dataset", "{rows}", "--name", "t")


def nan_base(ws) -> None:
    """A copy of the tiny model whose first attention weight holds NaN: the loss is NaN at step 1."""
    import shutil

    from safetensors.torch import load_file, save_file

    target = ws.tmp / "nan-model"
    shutil.copytree(ws.model, target)
    state = load_file(str(target / "model.safetensors"))
    key = next(k for k in sorted(state) if "q_proj.weight" in k)
    state[key][0, 0] = float("nan")
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})


CASES = [
    case("train-nothing-to-train-on", "train", "{model}", expect="nothing to train on", code=2),
    case("train-dataset-missing", "train", "{model}", "--dataset", "{tmp}/none.json", expect=("none.json", "not found"), code=2),
    case("train-dataset-and-raw-text", *T, "--raw-text", "{text}", expect="exclude each other", code=2),
    case("train-epochs-inf", *T, "--epochs", "inf", expect="--epochs must be a finite number", code=2),
    case("train-epochs-nan", *T, "--epochs", "nan", expect="--epochs must be a finite number", code=2),
    case("train-epochs-zero", *T, "--epochs", "0", expect="--epochs must be positive", code=2),
    case("train-epochs-absurd", *T, "--epochs", "1e300", expect="at most 1,000,000", code=2),
    case("train-learning-rate-nan", *T, "--learning-rate", "nan", expect="--learning-rate must be a finite number", code=2),
    case("train-learning-rate-negative", *T, "--learning-rate", "-1", expect="--learning-rate must be positive", code=2),
    case("train-alpha-inf", *T, "--alpha", "inf", expect="--alpha must be a finite number", code=2),
    case("train-dropout-one", *T, "--dropout", "1", expect="--dropout must be in [0, 1)", code=2),
    case("train-stop-at-loss-inf", *T, "--stop-at-loss", "inf", expect="--stop-at-loss must be a finite number", code=2),
    case("train-rank-zero", *T, "--rank", "0", expect="--rank must be at least 1", code=2),
    case("train-micro-batch-zero", *T, "--micro-batch-size", "0", expect="--micro-batch-size must be at least 1", code=2),
    case("train-batch-smaller-than-micro", *T, "--batch-size", "2", "--micro-batch-size", "4", expect="is smaller than --micro-batch-size", code=2),
    case("train-warmup-negative", *T, "--warmup-steps", "-1", expect="--warmup-steps must not be negative", code=2),
    case("train-cutoff-one", *T, "--cutoff-len", "1", expect="--cutoff-len must be at least 2", code=2),
    case("train-scheduler-unknown", *T, "--scheduler", "sometimes", expect="unknown scheduler 'sometimes'", code=2),
    case("train-optimizer-unknown", *T, "--optimizer", "lion9", expect="unknown optimizer 'lion9'", code=2),
    case("train-precision-unknown", *T, "--precision", "fp64", expect="unknown precision 'fp64'", code=2),
    case("train-report-to-unknown", *T, "--report-to", "neptune", expect="unknown --report-to 'neptune'", code=2),
    case("train-report-to-one-unknown", *T, "--report-to", "tensorboard,comet", expect="unknown --report-to 'comet'", code=2),
    case("train-val-set-size-not-whole", *T, "--val-set-size", "1.5", expect="--val-set-size must be a whole number of examples or a fraction", code=2),
    case("train-val-set-size-negative", *T, "--val-set-size", "-1", expect="--val-set-size must be a whole number", code=2),
    case("train-val-set-size-everything", *T, "--val-set-size", "1000", expect=("holds out 1000 of the", "leaving none to train on")),
    case("train-val-set-size-and-eval-dataset", *T, "--val-set-size", "2", "--eval-dataset", "{rows}", expect="exclude each other", code=2),
    case("train-load-best-without-eval", *T, "--load-best", expect="--load-best needs an evaluation set", code=2),
    case("train-load-best-eval-steps-zero", *T, "--load-best", "--val-set-size", "2", "--eval-steps", "0",
         expect="--load-best needs evaluations, but --eval-steps is 0", code=2),
    case("train-early-stopping-without-eval", *T, "--early-stopping-patience", "2", expect="--early-stopping-patience needs an evaluation set", code=2),
    case("train-early-stopping-negative", *T, "--early-stopping-patience", "-1", expect="--early-stopping-patience must not be negative", code=2),
    case("train-max-steps-negative", *T, "--max-steps", "-3", expect="--max-steps must not be negative", code=2),
    case("train-max-steps-not-a-number", *T, "--max-steps", "many", expect="'many' is not a valid integer", code=2),
    case("train-weight-decay-negative", *T, "--weight-decay", "-0.1", expect="--weight-decay must not be negative", code=2),
    case("train-weight-decay-nan", *T, "--weight-decay", "nan", expect="--weight-decay must be a finite number", code=2),
    case("train-gradient-checkpointing-config-bad", *T, "--config", "{tmp}/c.yaml", expect="'gradient_checkpointing' has an invalid value", code=2,
         setup=write("c.yaml", "gradient_checkpointing: sometimes\n")),
    case("train-init-unknown", *T, "--init-lora-weights", "magic", expect="unknown --init-lora-weights 'magic'", code=2),
    case("train-shard-unknown", *T, "--shard", "zero3", expect="unknown --shard 'zero3'", code=2),
    case("train-shard-8bit", *T, "--shard", "fsdp2", "--load-in-8bit", expect="cannot shard an 8-bit base"),
    case("train-8bit-and-4bit", *T, "--load-in-8bit", "--load-in-4bit", expect="exclude each other", code=2),
    case("train-loader-unknown", *T, "--loader", "no-such-loader", expect="unknown loader 'no-such-loader'", code=2),
    case("train-loader-cannot-train", *T, "--loader", "exllama", expect="exllama"),
    case("train-loader-disabled", *T, expect="'transformers' loader is disabled", env={"LORAKIT_DISABLE_PLUGINS": "transformers_loader"}),
    case("train-name-with-slash", "train", "{model}", "--dataset", "{rows}", "--name", "a/b", expect="is not a valid LoRA name", code=2),
    case("train-target-modules-unknown", *T, "--target-modules", "wq,wv", expect="--target-modules wq,wv matches no layer", code=2),
    case("train-target-modules-empty", *T, "--target-modules", ",", expect="--target-modules is empty", code=2),
    case("train-experts-unknown", *T, "--experts", "some", expect="--experts", code=2),
    case("train-experts-target-on-a-dense-model", *T, "--experts", "target", expect="has no mixture-of-experts layers", code=2),
    case("train-raw-overlap-not-below-cutoff", "train", "{model}", "--raw-text", "{text}", "--name", "t", "--cutoff-len", "64", "--overlap-len", "64",
         expect="must be larger than --overlap-len", code=2),
    case("train-raw-text-missing", "train", "{model}", "--raw-text", "{tmp}/nowhere", "--name", "t", expect="not found", code=2),
    case("train-raw-text-folder-without-txt", "train", "{model}", "--raw-text", "{tmp}/books", "--name", "t", expect="has no .txt files",
         setup=write("books/a.md", "# a")),
    case("train-raw-text-all-blocks-dropped", "train", "{model}", "--raw-text", "{text}", "--name", "t", "--min-chars", "100000",
         expect=("no block left to train on", "at most --min-chars 100000")),
    case("train-format-unknown", *T, "--format", "nosuch", expect="unknown format 'nosuch'", code=2),
    case("train-format-file-missing", *T, "--format", "{tmp}/fmt.json", expect="format file", code=2),
    case("train-format-file-bad-json", *T, "--format", "{tmp}/fmt.json", expect="is not valid JSON", setup=write("fmt.json", "{nope")),
    case("train-format-file-unknown-placeholder", *T, "--format", "{tmp}/fmt.json", expect="%answer% which is not one of its keys",
         setup=write("fmt.json", json.dumps({"instruction,output": "%instruction% %answer%"}))),
    case("train-rows-match-no-format", "train", "{model}", "--dataset", "{tmp}/odd.json", "--name", "t", expect="cannot tell the dataset's format",
         setup=write("odd.json", json.dumps([{"question": "a", "reply": "b"}]))),
    case("train-dataset-empty-list", "train", "{model}", "--dataset", "{tmp}/empty.json", "--name", "t", expect="is empty", setup=write("empty.json", "[]")),
    case("train-dataset-not-json", "train", "{model}", "--dataset", "{tmp}/bad.json", "--name", "t", expect="not valid JSON", setup=write("bad.json", "[{]")),
    case("train-dataset-row-not-object", "train", "{model}", "--dataset", "{tmp}/strs.json", "--name", "t", expect="expected a JSON object",
         setup=write("strs.json", '["a", "b"]')),
    case("train-eval-dataset-missing", *T, "--eval-dataset", "{tmp}/eval.json", expect="--eval-dataset", code=2),
    case("train-config-missing", *T, "--config", "{tmp}/none.yaml", expect="not found", code=2),
    case("train-config-unknown-key", *T, "--config", "{tmp}/c.yaml", expect="unknown parameter 'warp_speed'", code=2, setup=write("c.yaml", "warp_speed: 9\n")),
    case("train-config-bad-yaml", *T, "--config", "{tmp}/c.yaml", expect="not valid YAML", code=2, setup=write("c.yaml", "rank: [1, 2\n")),
    case("train-config-bad-value", *T, "--config", "{tmp}/c.yaml", expect="'rank' has an invalid value", code=2, setup=write("c.yaml", "rank: many\n")),
    case("train-config-epochs-inf", *T, "--config", "{tmp}/c.yaml", expect="--epochs must be a finite number", code=2, setup=write("c.yaml", "epochs: .inf\n")),
    case("train-copy-from-missing", *T, "--copy-from", "ghost", expect="--copy-from: 'ghost'", code=2),
    case("train-resume-nothing", *T, "--resume", expect="nothing to resume", code=2),
    case("train-resume-and-overwrite", *T, "--resume", "--overwrite", expect="exclude each other", code=2),
    case("train-existing-lora", *T, expect="a LoRA already exists", code=2, setup=lora_in_home("t")),
    case("train-output-is-a-file", "train", "{model}", "--dataset", "{rows}", "--output", "{tmp}/out", expect="is not a folder", code=2,
         setup=write("out", "x")),
    case("train-home-is-a-file", *T, expect=("LORAKIT_HOME", "is a file"), env={"LORAKIT_HOME": "{tmp}/home-file"}, setup=write("home-file", "x")),
    case("train-model-missing", "train", "{tmp}/nomodel", "--dataset", "{rows}", "--name", "t", expect="not found"),
    case("train-base-weights-nan", "train", "{tmp}/nan-model", "--dataset", "{rows}", "--name", "t", "--epochs", "1", "--batch-size", "4",
         "--micro-batch-size", "4", "--warmup-steps", "0", "--rank", "2", "--precision", "fp32", "--add-eos",
         expect=("the base model's weight", "q_proj.weight holds NaN or Inf"), setup=nan_base),
]
