"""chat (and apply's sampling options, which ``apply -i`` uses): flags refused before the REPL starts."""

from bad_input_table import case

CHAT = ("chat", "{model}", "--no-history")
DOWN = "http://127.0.0.1:9"  # the discard port: nothing listens there, the connection is refused at once
CASES = [
    case("chat-model-missing", "chat", "{tmp}/nope", expect=("nope", "not found")),
    case("chat-lora-missing", *CHAT, "--lora", "{tmp}/no-such-lora", expect="no-such-lora"),
    case("chat-lora-weight-nan", *CHAT, "--lora", "{lora}:nan", expect="'nan' is not a number", code=2),
    case("chat-lora-twice", *CHAT, "--lora", "{lora}", "--lora", "{lora}:0.5", expect="names the LoRA", code=2),
    case("chat-temperature-zero", *CHAT, "--temperature", "0", expect="--temperature must be a number above 0", code=2),
    case("chat-max-new-tokens-zero", *CHAT, "--max-new-tokens", "0", expect="--max-new-tokens must be at least 1", code=2),
    case("chat-top-p-too-big", *CHAT, "--top-p", "2", expect="--top-p must be in (0, 1]", code=2),
    case("chat-template-unknown", *CHAT, "--template", "bogus", expect="'bogus' is not one of", code=2),
    case("chat-8bit-and-4bit", *CHAT, "--load-in-8bit", "--load-in-4bit", expect="exclude each other", code=2),
    case("chat-api-key-without-url", *CHAT, "--api-key", "k", expect="--api-key is for a server", code=2),
    case("chat-url-not-http", "chat", "--url", "ftp://example.org", expect="is not an http(s) address", code=2),
    case("chat-url-no-host", "chat", "--url", "http://", expect="is not an http(s) address", code=2),
    case("chat-url-with-load-option", "chat", "--url", DOWN, "--load-in-8bit", expect="--load-in-8bit applies to a model loaded here", code=2),
    case("chat-url-with-loader", "chat", "--url", DOWN, "--loader", "transformers", expect="--loader applies to a model loaded here", code=2),
    case("chat-url-with-template", "chat", "--url", DOWN, "--template", "raw", expect="--template applies to a model loaded here", code=2),
    case("chat-url-lora-weight-word", "chat", "--url", DOWN, "--lora", "a:abc", expect="'abc' is not a number", code=2),
    case("chat-url-lora-mixture-in-one", "chat", "--url", DOWN, "--lora", "a+b", expect="add one adapter at a time", code=2),
    case("chat-url-nothing-listening", "chat", "--url", DOWN, expect="cannot reach the server at http://127.0.0.1:9/v1"),
    case("chat-url-nothing-listening-with-key", "chat", "--url", DOWN, "--api-key", "sk-SECRET-1234", expect="cannot reach the server"),
    case("chat-url-password-not-shown", "chat", "--url", "http://me:pw@127.0.0.1:9", expect="cannot reach the server at http://127.0.0.1:9/v1"),
    case("apply-temperature-nan", "apply", "{model}", "-i", "--temperature", "nan", expect="--temperature must be a number above 0", code=2),
]
