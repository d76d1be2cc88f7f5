"""download: repository ids and revisions, options, offline use, and a hub stand-in that says no."""

from bad_input_table import case, write

HUB = ("bad_input_hub",)
CASES = [
    case("download-not-a-repo-id", "download", "org./name", expect="'org./name' is not a valid repository id", code=2),
    case("download-too-many-slashes", "download", "a/b/c", expect="has more than one '/'", code=2),
    case("download-bad-characters", "download", "org/na me", expect="may only hold letters", code=2),
    case("download-empty-revision", "download", "org/name:", expect="names no revision", code=2),
    case("download-two-revisions", "download", "org/name:v1", "--revision", "v2", expect="two revisions given", code=2),
    case("download-revision-with-space", "download", "org/name", "--revision", "a b", expect="is not a valid revision", code=2),
    case("download-threads-zero", "download", "org/name", "--threads", "0", expect="--threads", code=2),
    case("download-check-never-downloaded", "download", "org/name", "--check", expect="org/name"),
    case("download-offline-not-cached", "download", "org/notcached", expect="org/notcached", env={"HF_HUB_OFFLINE": "1"}),
    case("download-output-is-a-file", "download", "lorakit-test/tiny-lora", "--output", "{tmp}/out", expect="out",
         setup=write("out", "a file"), fixtures=HUB),
    case("download-repo-not-on-hub", "download", "lorakit-test/no-such-lora", expect="lorakit-test/no-such-lora", fixtures=HUB),
    case("download-revision-not-on-hub", "download", "lorakit-test/tiny-lora:nosuchbranch", expect="nosuchbranch", fixtures=HUB),
    case("download-private-without-token", "download", "lorakit-test/private-lora", expect="lorakit-test/private-lora", fixtures=HUB),
    case("download-include-matches-nothing", "download", "lorakit-test/tiny-lora", "--include", "*.onnx", expect="no file matches --include *.onnx", fixtures=HUB),
    case("download-empty-adapter", "download", "lorakit-test/empty-lora", expect="no tensors", fixtures=HUB),
]
