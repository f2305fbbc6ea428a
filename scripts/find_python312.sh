#!/usr/bin/env bash
# Prints the path of a Python 3.12 interpreter, or explains how to get one.
# Order: $PYTHON, python3.12 on PATH (Colab, most distros), then pyenv's installs
# (pyenv's shim refuses python3.12 when another version is the global one).
set -u
ok() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
for candidate in "${PYTHON:-}" python3.12 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 && ok "$candidate"; then
    command -v "$candidate"; exit 0
  fi
done
root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for candidate in "$root"/versions/3.12*/bin/python3.12; do
  if [ -x "$candidate" ] && ok "$candidate"; then echo "$candidate"; exit 0; fi
done
echo "mer-jax needs Python 3.12 (jax 0.12 / flax 0.12 require it) and none was found." >&2
echo "Install it (e.g. 'pyenv install 3.12' or your distro's python3.12) or set PYTHON=/path/to/python3.12." >&2
exit 1
