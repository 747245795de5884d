#!/usr/bin/env bash
# The image's wheelhouse: router-health's wheel built here and every wheel it
# needs, for the image's Python, so `docker build` installs with
# `pip install --no-index` and needs no network inside the build.
#
#   deploy/docker/wheelhouse.sh [PYTHON_VERSION] [EXTRAS]
#
# PYTHON_VERSION: the base image's Python (default: the Dockerfile's
# PYTHON_VERSION); EXTRAS: e.g. "cluster,bedrock" (default: the Dockerfile's
# EXTRAS; "" for none; pass the same value to `docker build --build-arg
# EXTRAS=...`). Writes deploy/docker/wheels/.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=deploy/docker
python_version="${1:-$(sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile)}"
extras="${2-$(sed -n 's/^ARG EXTRAS="\(.*\)"$/\1/p' Dockerfile)}"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
out="$here/wheels"
rm -rf "$out"
mkdir -p "$out"

if ! (cd /tmp && "$PYTHON" -c 'import build.__main__' 2>/dev/null); then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check build
fi
"$PYTHON" -m build --wheel --outdir "$out" . >"$out/build.log" 2>&1 || {
    cat "$out/build.log" >&2
    exit 1
}
rm "$out/build.log"
wheel=$(ls "$out"/router_health-*.whl)

# Wheels for the image, not for this machine: its Python, CPython's ABI, and
# any glibc up to Debian 12's (2.36), on this machine's architecture. pip
# (23) does not widen a manylinux_2_N tag by itself, so each is named.
arch=$(uname -m)
platforms=(--platform "manylinux2014_$arch")
for minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
nodot="${python_version//./}"
requirement="router-health @ file://$PWD/$wheel"
if [ -n "$extras" ]; then requirement="router-health[$extras] @ file://$PWD/$wheel"; fi
"$PYTHON" -m pip download --disable-pip-version-check --progress-bar off \
    --dest "$out" --only-binary=:all: \
    --python-version "$python_version" --implementation cp --abi "cp$nodot" --abi abi3 --abi none \
    "${platforms[@]}" \
    "$requirement" pip >"$out/download.log" 2>&1 || {
    cat "$out/download.log" >&2
    exit 1
}
rm "$out/download.log"
echo "wheelhouse: $(find "$out" -name "*.whl" | wc -l) wheels for CPython $python_version ($arch) in $out" >&2
