"""upload, and hub ids given as MODEL or --lora: nothing published, nothing half-written."""

from bad_input_table import adapter, case, with_config, write

HUB = ("bad_input_hub",)
CASES = [
    case("upload-missing-adapter", "upload", "{tmp}/nowhere", "org/name", expect=("nowhere", "not found")),
    case("upload-bad-repo-id", "upload", "{lora}", "org./name", expect="is not a valid repository id", code=2),
    case("upload-local-base-needs-base-model", "upload", "{lora}", "org/name", expect="--base-model", code=2),
    case("upload-bad-base-model", "upload", "{lora}", "org/name", "--base-model", "a/b/c", expect="more than one '/'", code=2),
    case("upload-pickle-only", "upload", "{tmp}/old", "org/name", "--base-model", "org/base", expect=("safetensors only", "lorakit convert"),
         setup=adapter("old", remove=("adapter_model.safetensors",), files={"adapter_model.bin": b"x"})),
    case("upload-no-config", "upload", "{tmp}/empty", "org/name", "--base-model", "org/base", expect="no adapter_config.json",
         setup=write("empty/notes.txt", "x")),
    case("upload-no-token", "upload", "{lora}", "org/name", "--base-model", "org/base", expect=("token", "HF_TOKEN"), fixtures=HUB),
    case("upload-offline", "upload", "{lora}", "org/name", "--base-model", "org/base", "--token", "hf_x", expect="HF_HUB_OFFLINE",
         env={"HF_HUB_OFFLINE": "1"}),
    case("upload-wrong-token", "upload", "{lora}", "lorakit-test/new-lora", "--base-model", "org/base", "--token", "hf_wrongTokenValue0123456789abcdef",
         expect="HTTP 401", fixtures=HUB),
    case("convert-missing", "convert", "{tmp}/nowhere", expect=("nowhere", "not found")),
    case("convert-pickle-needs-allow-pickle", "convert", "{tmp}/old", expect="--allow-pickle",
         setup=adapter("old", remove=("adapter_model.safetensors",), files={"adapter_model.bin": b"x"})),
    case("convert-damaged-pickle", "convert", "{tmp}/old", "--allow-pickle", expect="adapter_model.bin",
         setup=adapter("old", remove=("adapter_model.safetensors",), files={"adapter_model.bin": b"not a pickle at all"})),
    case("convert-fused-qkv", "convert", "{tmp}/fused", "--allow-pickle", expect="fused-QKV",
         setup=adapter("fused", config=with_config(enable_lora=[True, False, True]))),
    case("convert-no-weights", "convert", "{tmp}/bare", expect="no weights",
         setup=adapter("bare", remove=("adapter_model.safetensors",))),
    case("generate-model-hub-id-offline", "generate", "someorg/somemodel", "--prompt", "x", expect=("not downloaded", "lorakit download someorg/somemodel"),
         env={"HF_HUB_OFFLINE": "1"}),
    case("generate-lora-hub-id-not-on-hub", "generate", "{model}", "--lora", "lorakit-test/tiny-llama-missing", "--prompt", "x",
         expect="not found", fixtures=HUB),
    case("eval-model-hub-id-offline", "eval", "someorg/somemodel", "--dataset", "{text}", expect="lorakit download someorg/somemodel",
         env={"HF_HUB_OFFLINE": "1"}),
    case("merge-lora-hub-id-offline", "merge", "{model}", "--lora", "someorg/somelora:v2", "--output", "{tmp}/merged",
         expect=("someorg/somelora", "lorakit download someorg/somelora:v2"), env={"HF_HUB_OFFLINE": "1"}),
]
