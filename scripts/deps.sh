#!/usr/bin/env bash
# Idempotent installer of everything kafkad's build and tests need on a
# Debian 12 machine. Installs only what is missing; prints nothing and takes
# well under a few seconds when everything is already there.
#
#   scripts/deps.sh [--no-kafka] [-v|--verbose]
#
#   1. Debian packages (apt-get, sudo only when not root; `apt-get update`
#      only when something is missing).
#   2. A Python venv at <repo>/.venv (made with the machine's python3, or
#      $PYTHON) holding the test/bench Python packages.
#   3. tests/kafka/cluster fetch: Kafka 3.9.1 jars for the test broker
#      (skipped with --no-kafka).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"
WITH_KAFKA=1
VERBOSE=0

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-kafka) WITH_KAFKA=0 ;;
        -v|--verbose) VERBOSE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "deps.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { echo "deps: $*" >&2; }
die() { echo "deps: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- apt
APT_PKGS=(
    librdkafka-dev libuv1-dev libmsgpack-dev libsystemd-dev check
    libjansson-dev uthash-dev libzookeeper-mt-dev
    meson ninja-build pkg-config make gcc clang kcat
)
command -v java >/dev/null 2>&1 || APT_PKGS+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || APT_PKGS+=(maven)

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    PYTHON=$(command -v python3 || true)
fi
if [ -z "$PYTHON" ]; then
    APT_PKGS+=(python3 python3-venv)
elif [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's python3 has venv but not ensurepip without python3-venv
    APT_PKGS+=(python3-venv)
fi

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for p in "${APT_PKGS[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing Debian packages (${missing[*]}) and no apt-get"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install: ${missing[*]}"
        SUDO=(sudo)
    fi
    say "installing Debian packages: ${missing[*]}"
    aptlog=$(mktemp)
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$aptlog" 2>&1 ||
       ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1; then
        tail -n 40 "$aptlog" >&2
        rm -f "$aptlog"
        die "apt-get failed for: ${missing[*]}"
    fi
    [ "$VERBOSE" = 1 ] && cat "$aptlog" >&2
    rm -f "$aptlog"
    still=()
    for p in "${missing[@]}"; do pkg_installed "$p" || still+=("$p"); done
    [ ${#still[@]} -eq 0 ] || die "still not installed after apt-get: ${still[*]}"
    hash -r
    [ -n "$PYTHON" ] || PYTHON=$(command -v python3)
fi

# ---------------------------------------------------------------- python venv
# import name -> pip requirement. pykafka 2.8.0 pins kazoo==2.5.0, so kazoo is
# pinned to the same version to keep pip's resolver from fighting over it.
PY_IMPORTS=(msgpack pytest confluent_kafka kafka pykafka kazoo matplotlib mypy)
PY_SPECS=(msgpack pytest confluent-kafka kafka-python pykafka==2.8.0 kazoo==2.5.0 matplotlib mypy)

# One interpreter start checks all of them; prints the pip specs missing.
py_missing() {
    "$VENV/bin/python" - "${PY_IMPORTS[@]}" -- "${PY_SPECS[@]}" <<'EOF' 2>/dev/null
import importlib, importlib.metadata, sys
args = sys.argv[1:]
sep = args.index("--")
mods, specs = args[:sep], args[sep + 1:]
missing = []
for mod, spec in zip(mods, specs):
    try:
        m = importlib.import_module(mod)
        if mod == "pykafka":
            from pykafka import KafkaClient  # noqa: F401
        if "==" in spec:
            dist, want = spec.split("==", 1)
            if importlib.metadata.version(dist) != want:
                raise ImportError("%s is not %s" % (dist, want))
    except Exception:
        missing.append(spec)
print(" ".join(missing))
EOF
}

if [ ! -x "$VENV/bin/python" ]; then
    [ -n "$PYTHON" ] || die "no python3 to create $VENV with"
    say "creating venv $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv $VENV' failed"
fi

py_missing_list=$(py_missing) || die "$VENV/bin/python does not run; delete $VENV and rerun"
if [ -n "$py_missing_list" ]; then
    read -r -a need <<<"$py_missing_list"
    say "installing Python packages into .venv: ${need[*]}"
    pipq=(-q)
    [ "$VERBOSE" = 1 ] && pipq=()
    if ! "$VENV/bin/python" -m pip install "${pipq[@]}" --disable-pip-version-check "${need[@]}"; then
        # tell exactly which one(s) fail
        failed=()
        for spec in "${need[@]}"; do
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$spec" ||
                failed+=("$spec")
        done
        [ ${#failed[@]} -eq 0 ] || die "pip could not install: ${failed[*]}"
    fi
    still=$(py_missing)
    [ -z "$still" ] || die "installed but still not importable from $VENV: $still"
fi

# ---------------------------------------------------------------- kafka jars
if [ "$WITH_KAFKA" = 1 ]; then
    # silent when the jar cache is complete; reports progress when fetching
    "$REPO/tests/kafka/cluster" fetch >/dev/null || die "tests/kafka/cluster fetch failed"
fi
