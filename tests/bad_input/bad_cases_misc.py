"""The root command, loaders and plugins: unknown commands, options and arguments."""

from bad_input_table import case

CASES = [
    case("root-unknown-command", "trian", expect="No such command 'trian'", code=2),
    case("root-unknown-option", "--colour", expect="No such option '--colour'", code=2),
    case("loaders-unknown-option", "loaders", "--wide", expect="No such option '--wide'", code=2),
    case("loaders-extra-argument", "loaders", "transformers", expect="Got unexpected extra argument", code=2),
    case("plugins-unknown-option", "plugins", "--verbose", expect="No such option '--verbose'", code=2),
    case("plugins-extra-argument", "plugins", "exllama", expect="Got unexpected extra argument", code=2),
    case("apply-unknown-option", "apply", "--lorra", "x", expect="No such option '--lorra'", code=2),
    case("train-option-needs-a-number", "train", "--rank", "eight", expect="'eight' is not a valid integer", code=2),
]
