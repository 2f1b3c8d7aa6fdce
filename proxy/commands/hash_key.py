"""`guardstream hash-key`: the sha256 digest to put in `client_keys` (keys are never stored in clear)."""

from __future__ import annotations

import argparse
import getpass
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdin", action="store_true", help="read the key from standard input")


def run(args: argparse.Namespace) -> int:
    from proxy.auth import hash_key

    key = sys.stdin.readline().strip() if args.stdin else getpass.getpass("client key: ")
    if not key:
        print("guardstream: empty key", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0
