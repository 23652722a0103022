#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh demo   install (once) and run the main job on the embedded default
#   ./run.sh test   install (once) and run the full test suite
#   ./run.sh env    install (once) and print the virtual environment's path
# The virtual environment lives outside the clone, keyed by the lock files' hash,
# so a second clone (or CI on the same machine) reuses the ~5 GB install. It holds only
# the pinned dependencies: clipworks itself always runs from the clone that called this
# script (PYTHONPATH below), so one clone never runs another clone's code.
# bin/clipworks and bin/activate do the same for the `clipworks` command in a shell.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

lock_hash="$(cat requirements/lock.txt requirements/nodeps.txt | sha256sum | cut -c1-16)"
venv="${CLIPWORKS_VENV_ROOT:-$HOME/.cache/clipworks/venvs}/py311-$lock_hash"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

if [ ! -f "$venv/.installed" ]; then
  echo "[clipworks] creating $venv (first run: about two minutes)" >&2
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  if ! "$venv/bin/pip" install --disable-pip-version-check -r requirements/lock.txt >"$venv.install.log" 2>&1; then
    tail -n 30 "$venv.install.log" >&2
    echo "[clipworks] install failed; full log: $venv.install.log" >&2
    exit 1
  fi
  if ! "$venv/bin/pip" install --disable-pip-version-check --no-deps -r requirements/nodeps.txt >>"$venv.install.log" 2>&1; then
    tail -n 30 "$venv.install.log" >&2
    echo "[clipworks] install failed; full log: $venv.install.log" >&2
    exit 1
  fi
  touch "$venv/.installed"
fi

export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PATH="$venv/bin:$PATH"

case "${1:-}" in
  demo)
    shift
    exec "$venv/bin/python" -m clipworks.demo "$@"
    ;;
  test)
    shift
    # The web page test drives Debian's chromium through Playwright; install it once where we may.
    if [ ! -x /usr/bin/chromium ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[clipworks] installing Debian's chromium for the web page test (once)" >&2
        { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } \
          >"$venv.chromium.log" 2>&1 || echo "[clipworks] could not install chromium (see $venv.chromium.log); the page test will be skipped" >&2
      else
        echo "[clipworks] /usr/bin/chromium is missing: 'apt-get install chromium' to run the web page test" >&2
      fi
    fi
    set +e
    "$venv/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
      echo "[clipworks] pytest collected no tests: treating as a failure" >&2
      exit 1
    fi
    exit "$rc"
    ;;
  env)
    echo "$venv"
    ;;
  *)
    echo "usage: ./run.sh demo|test|env [args...]" >&2
    exit 2
    ;;
esac
