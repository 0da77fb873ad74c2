#!/usr/bin/env bash
# The Linux CI recipe of docs/ci.md: machine tests on orbsim, as root (or `sudo -E`).
#
#   ci/linux-orbsim.sh key            print the key of orbsim's machine image (a CI cache key)
#   ci/linux-orbsim.sh [test] [ARGS]  run pytest ARGS (default: examples -n 3) on orbsim
#
# Environment:
#   ORBSIM_IMAGE_DIR      where orbsim keeps its machine image (default /var/cache/orbsim)
#   ORBSIM_IMAGE_ARCHIVE  a tar file of the image that CI caches between runs (default: none).
#                         Restored before the tests when the image is missing and its key
#                         matches; written after the tests when missing (owned by $SUDO_USER,
#                         so a cache step running as that user can read it).
#   VENV                  the virtualenv to use or make (default .venv)
# The project is installed with its test extra; the first run installs orbsim's system
# packages with apt-get and builds the image (a few minutes, Debian's mirror), with progress.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
archive=${ORBSIM_IMAGE_ARCHIVE:-}

if [ "$(id -u)" -ne 0 ]; then
    echo "ci/linux-orbsim.sh: orbsim's machines need root: run it as root or with sudo -E" >&2
    exit 1
fi

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            echo "ci/linux-orbsim.sh: installing python3-venv with apt-get" >&2
            rm -rf "$venv"
            apt-get install -y -q python3-venv >/dev/null || {
                apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null
            }
            python3 -m venv "$venv"
        fi
    fi
    "$venv/bin/pip" install -q -e '.[test]' >&2
}

image_field() {  # image_field NAME: a field of `orbsim image status` (key, built_key, path, ready)
    "$venv/bin/orbsim" image status 2>/dev/null |
        "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin).get('$1') or '')"
}

restore() {
    [ -n "$archive" ] && [ -f "$archive" ] && [ "$(image_field ready)" != "True" ] || return 0
    local dir
    dir=$(dirname "$(image_field path)")
    mkdir -p "$dir"
    tar -xf "$archive" -C "$dir"
    if [ "$(image_field built_key)" != "$(image_field key)" ]; then
        echo "ci/linux-orbsim.sh: $archive holds an image of another recipe: building a new one"
        rm -rf "$(image_field path)"
        rm -f "$archive"
    else
        echo "ci/linux-orbsim.sh: machine image restored from $archive"
    fi
}

save() {
    [ -n "$archive" ] && [ ! -f "$archive" ] && [ "$(image_field ready)" = "True" ] || return 0
    local path
    path=$(image_field path)
    mkdir -p "$(dirname "$archive")"
    tar -cf "$archive.tmp" -C "$(dirname "$path")" "$(basename "$path")"
    mv "$archive.tmp" "$archive"
    if [ -n "${SUDO_UID:-}" ]; then chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$archive"; fi
    echo "ci/linux-orbsim.sh: machine image saved to $archive for the CI cache"
}

if [ "${1:-}" = key ]; then
    setup
    "$venv/bin/orbsim" image key
    exit 0
fi
if [ "${1:-}" = test ]; then shift; fi
setup
restore
if [ $# -eq 0 ]; then set -- examples -n 3; fi
set +e
"$venv/bin/pytest" "$@"
rc=$?
set -e
save
exit "$rc"
