"""`guardstream hash-key`: the sha256 digest to put in `client_keys` (keys are never stored in clear)."""

from __future__ import annotations

import argparse
import getpass
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", nargs="?", default=None,
                        help="the client key (it then stays in your shell history: without it you are prompted)")
    parser.add_argument("--stdin", action="store_true", help="read the key from standard input")


def run(args: argparse.Namespace) -> int:
    from proxy.auth import hash_key

    if args.key is not None and args.stdin:
        print("guardstream hash-key: give the key as an argument or with --stdin, not both", file=sys.stderr)
        return 2
    if args.key is not None:
        print("guardstream hash-key: note: a key given as an argument stays in your shell history; run "
              "`guardstream hash-key` (it prompts) or pipe it to `guardstream hash-key --stdin` instead",
              file=sys.stderr)
        key = args.key.strip()
    else:
        key = sys.stdin.readline().strip() if args.stdin else getpass.getpass("client key: ")
    if not key:
        print("guardstream hash-key: empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0
