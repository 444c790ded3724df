#!/usr/bin/env bash
# Release check: the package as a new user gets it. Builds the wheel from this checkout, installs it
# in a fresh venv with its dependencies from the registry only (this machine's pip config, local
# wheels and constraints ignored: PIP_CONFIG_FILE=/dev/null), then ingests sample_videos/ from
# outside the checkout and prints `vidconcept info`. Not part of `make test` (it downloads torch).
#
#   bash benchmarks/fresh_install.sh                  # everything (GBs of downloads: torch and its CUDA wheels)
#   RESOLVE_ONLY=1 bash benchmarks/fresh_install.sh   # only ask pip to solve the dependencies (no install)
#   LOCAL_PIP=1 bash benchmarks/fresh_install.sh      # keep this machine's pip config (its local torch wheel)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/vidconcept-fresh.XXXXXX)}
PYTHON=${PYTHON:-python3}
if [ -z "${LOCAL_PIP:-}" ]; then export PIP_CONFIG_FILE=/dev/null; unset PIP_CONSTRAINT PIP_FIND_LINKS PIP_EXTRA_INDEX_URL; fi
echo "work folder: $WORK"

# the wheel, built from a copy (an in-tree build leaves build/ and *.egg-info in the checkout)
mkdir -p "$WORK/src"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/src/"
cp -rL "$ROOT/vidconcept" "$WORK/src/vidconcept"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/pip"
"$PIP" install -q --upgrade pip
"$PIP" wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/vidconcept-*.whl)

if [ -n "${RESOLVE_ONLY:-}" ]; then
    "$PIP" install --dry-run --ignore-installed --report "$WORK/resolve.json" -q "$WHEEL"
    "$WORK/venv/bin/python" - "$WORK/resolve.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
print(f"resolved {len(names)} packages;", ", ".join(f"{n} {names[n]}" for n in
      ("torch", "torchvision", "scenedetect-headless", "opencv-python-headless", "faiss-gpu", "fastapi",
       "starlette", "python-multipart") if n in names))
assert "opencv-python" not in names and "scenedetect" not in names, "a GUI OpenCV would be installed"
PY
    exit 0
fi

"$PIP" install "$WHEEL"
cd "$WORK"  # not the checkout: the installed package and its bundled default model only
"$WORK/venv/bin/vidconcept" ingest "$ROOT/sample_videos" --index "$WORK/index"
"$WORK/venv/bin/vidconcept" info --index "$WORK/index"
echo "fresh install OK: $WHEEL"
