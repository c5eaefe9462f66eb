"""Prints the size of each file and fails unless each is strictly smaller than
the next: a compressed weights file must be smaller than what it replaces."""

import os
import sys


def main():
    paths = sys.argv[1:]
    if len(paths) < 2:
        sys.exit("usage: increasing_sizes.py SMALLEST ... LARGEST")
    sizes = [os.path.getsize(path) for path in paths]
    for path, size in zip(paths, sizes):
        print(f"{size} {path}")
    for (a, size_a), (b, size_b) in zip(zip(paths, sizes), zip(paths[1:], sizes[1:])):
        if size_a >= size_b:
            sys.exit(f"{a} ({size_a} bytes) is not smaller than {b} ({size_b} bytes)")


if __name__ == "__main__":
    main()
