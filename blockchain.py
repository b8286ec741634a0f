#!/usr/bin/env python3
"""The seed plan's build and test entry point, for the Go implementation.

  python3 blockchain.py build --mode release|debug   builds bin/kimura-node and bin/kimura-bench
  python3 blockchain.py test --suite unit|integration|all
  python3 blockchain.py lint                          go vet, gofmt, staticcheck
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
STATICCHECK = "honnef.co/go/tools/cmd/staticcheck@v0.8.2"
COMMANDS = ["kimura-node", "kimura-bench"]


def sh(*cmd, capture=False):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=capture)
    if r.returncode != 0:
        if capture:
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
        sys.exit(r.returncode)
    return r.stdout if capture else ""


def build(mode):
    flags = ["-trimpath", "-ldflags=-s -w"] if mode == "release" else ["-gcflags=all=-N -l"]
    for cmd in COMMANDS:
        if os.path.isdir(os.path.join(ROOT, "cmd", cmd)):
            sh("go", "build", *flags, "-o", os.path.join("bin", cmd), "./cmd/" + cmd)


def test(suite):
    pkgs = sh("go", "list", "./...", capture=True).split()
    integration = [p for p in pkgs if p.endswith("/e2e")]
    unit = [p for p in pkgs if p not in integration]
    chosen = {"unit": unit, "integration": integration, "all": unit + integration}[suite]
    sh("go", "test", "-count=1", *chosen)


def lint():
    sh("go", "vet", "./...")
    files = sh("git", "ls-files", "*.go", capture=True).split()
    unformatted = sh("gofmt", "-l", *files, capture=True).strip() if files else ""
    if unformatted:
        print("gofmt would change:\n" + unformatted)
        sys.exit(1)
    sh("go", "run", STATICCHECK, "./...")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--mode", choices=["release", "debug"], default="release")
    t = sub.add_parser("test")
    t.add_argument("--suite", choices=["unit", "integration", "all"], default="all")
    sub.add_parser("lint")
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.mode)
    elif args.cmd == "test":
        test(args.suite)
    else:
        lint()


if __name__ == "__main__":
    main()
