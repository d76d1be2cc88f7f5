"""serve: bounds, the address/key rule, the engine, --lora (syntax, missing, unservable), load options."""

from bad_input_table import adapter, case, with_config

SRV = ("serve", "{model}")
CASES = [
    case("serve-port-out-of-range", *SRV, "--port", "70000", expect="--port must be between 0 and 65535", code=2),
    case("serve-port-negative", *SRV, "--port", "-1", expect="--port must be between 0 and 65535", code=2),
    case("serve-port-word", *SRV, "--port", "http", expect="'http' is not a valid integer", code=2),
    case("serve-max-batch-zero", *SRV, "--max-batch", "0", expect="--max-batch must be at least 1", code=2),
    case("serve-max-queue-negative", *SRV, "--max-queue", "-3", expect="--max-queue must be 0 or more", code=2),
    case("serve-max-loaded-loras-zero", *SRV, "--max-loaded-loras", "0", expect="--max-loaded-loras must be at least 1", code=2),
    case("serve-max-tokens-limit-zero", *SRV, "--max-tokens-limit", "0", expect="--max-tokens-limit must be at least 1", code=2),
    case("serve-more-loras-than-loaded", *SRV, "--lora", "{lora}", "--lora", "{lora2}", "--max-loaded-loras", "1",
         expect="--max-loaded-loras is 1", code=2),
    case("serve-public-host-without-key", *SRV, "--host", "0.0.0.0", expect=("--host 0.0.0.0", "needs --api-key"), code=2),
    case("serve-public-host-env-key-empty", *SRV, "--host", "0.0.0.0", "--api-key", "  ", expect="--api-key (or LORAKIT_API_KEY) is empty", code=2),
    case("serve-host-empty", *SRV, "--host", "", expect="--host is empty", code=2),
    case("serve-engine-unknown", *SRV, "--engine", "no-such-engine", expect=("unknown serving engine 'no-such-engine'", "lorakit"), code=2),
    case("serve-lora-missing", *SRV, "--lora", "{tmp}/none", expect=("none", "not found")),
    case("serve-lora-weight-not-a-number", *SRV, "--lora", "{lora}:abc", expect="'abc' is not a number", code=2),
    case("serve-lora-weight-inf", *SRV, "--lora", "{lora}:1e999", expect="not a finite number", code=2),
    case("serve-lora-twice", *SRV, "--lora", "{lora}", "--lora", "{lora}:0.5", expect="names the LoRA", code=2),
    case("serve-lora-dora", *SRV, "--lora", "{tmp}/dora", expect=("cannot be served per request", "DoRA"), code=2,
         setup=adapter("dora", config=with_config(use_dora=True))),
    case("serve-lora-not-an-adapter", *SRV, "--lora", "{tmp}", expect="not a LoRA adapter folder"),
    case("serve-model-missing", "serve", "{tmp}/nope", expect=("nope", "not found")),
    case("serve-loader-unknown", *SRV, "--loader", "no-such-loader", expect="unknown loader 'no-such-loader'", code=2),
    case("serve-8bit-and-4bit", *SRV, "--load-in-8bit", "--load-in-4bit", expect="exclude each other", code=2),
    case("serve-dtype-unknown", *SRV, "--dtype", "fp64", expect="'fp64' is not one of", code=2),
]
