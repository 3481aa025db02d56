"""One module per CLI sub-command; each defines `add_parser(subparsers)`. See kit/cli.py."""
