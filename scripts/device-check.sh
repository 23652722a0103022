#!/usr/bin/env bash
# Test suite and GPU benchmarks on a machine that has torch installed but no project venv and no network.
#
#   scripts/device-check.sh [--wheels DIR] [--tests "PYTEST ARGS"] [--quick] [--no-benchmarks] [--dry-run]
#   scripts/device-check.sh --download DIR [--python-version 3.12]   # here, with network: fill DIR with wheels
#
# --download (run beforehand, on a machine with PyPI) fetches the pinned wheels of requirements/lock.txt and
# requirements/nodeps.txt except torch and its CUDA stack (torch, torchvision, triton, nvidia-*, cuda-*), for
# the device machine's Python (--python-version, default this one's) on manylinux x86_64.
# On the device machine, only the wheels whose distribution is not importable already are installed, with
# pip install --no-index --find-links DIR --no-deps --target into a folder of their own (nothing system-wide is
# changed or upgraded), which goes on PYTHONPATH with this clone.
# Then: pytest -v --junitxml (all of tests/ unless --tests), and the benchmarks (GPU: fp16 image encoding and
# bf16 training step, clipworks vs open_clip, ViT-B-32 batch 256; without CUDA a small CPU run of the same
# scripts, so the flow itself can be checked anywhere). --quick: the benchmarks' smallest sizes; --no-benchmarks: tests only.
# Results go to $OUT (default ./device-check-out): junit.xml, pytest.log, benchmarks.txt, environment.txt.
# --dry-run prints what would be installed and run, and runs nothing.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

python_bin="${PYTHON:-python3}"
wheels=""
tests="tests"
quick=0
bench=1
dry=0
download=""
pyver=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --tests) tests="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-benchmarks) bench=0; shift ;;
    --dry-run) dry=1; shift ;;
    --download) download="$2"; shift 2 ;;
    --python-version) pyver="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# Pins worth shipping as wheels: everything but torch's own stack, which the device machine brings.
pins() {
  cat requirements/lock.txt requirements/nodeps.txt \
    | sed 's/#.*//; s/[[:space:]]//g' | grep -v '^$' \
    | grep -viE '^(torch|torchvision|torchaudio|triton|nvidia-[^=]*|cuda-[^=]*)=='
}

if [ -n "$download" ]; then
  pyver="${pyver:-$("$python_bin" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  [ "$dry" = 1 ] || mkdir -p "$download"
  [ "$dry" = 1 ] || pins > "$download/requirements.txt"
  cmd=("$python_bin" -m pip download --no-deps --only-binary=:all: --python-version "$pyver"
       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
       --platform linux_x86_64 --dest "$download" -r "$download/requirements.txt")
  echo "device-check: ${cmd[*]}"
  [ "$dry" = 1 ] && exit 0
  if ! "${cmd[@]}"; then
    # Pure-Python packages published only as sdists: download them as they are (pip builds them offline).
    echo "device-check: some pins have no binary wheel for Python $pyver; retrying them one by one" >&2
    while read -r pin; do
      "$python_bin" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform linux_x86_64 --dest "$download" "$pin" >/dev/null 2>&1 \
        || "$python_bin" -m pip download --no-deps --no-binary=:all: --dest "$download" "$pin" >/dev/null 2>&1 \
        || echo "device-check: could not download $pin" >&2
    done < "$download/requirements.txt"
  fi
  exit 0
fi

out="${OUT:-$here/device-check-out}"
mkdir -p "$out"
"$python_bin" -c 'import torch' 2>/dev/null || { echo "device-check: $python_bin cannot import torch" >&2; exit 1; }

# Which wheels are missing here: a distribution counts as present when importlib.metadata knows it.
missing=()
if [ -n "$wheels" ]; then
  [ -d "$wheels" ] || { echo "device-check: --wheels $wheels is not a folder" >&2; exit 1; }
  while IFS= read -r file; do
    missing+=("$file")
  done < <("$python_bin" - "$wheels" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")

present = {canonical(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]}
for f in sorted(Path(sys.argv[1]).iterdir()):
    if f.suffix == ".whl" or f.name.endswith((".tar.gz", ".zip")):
        name = f.name.split("-")[0] if f.suffix == ".whl" else f.name.rsplit("-", 1)[0]
        if canonical(name) not in present:
            print(f)
EOF
)
fi

pkgs="$out/pkgs"
export PYTHONPATH="$here:$pkgs${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_NO_INDEX=1
has_cuda="$("$python_bin" -c 'import torch; print(int(torch.cuda.is_available()))')"
if [ "$has_cuda" = 1 ]; then
  image_batch=256; text_batch=256; train_batch=256; steps=10; repeats=5; dev=cuda; train_model=ViT-B-32
else
  image_batch=8; text_batch=16; train_batch=16; steps=1; repeats=2; dev=cpu; train_model=ViT-Tiny-8-64
fi
[ "$quick" = 1 ] && { repeats=2; steps=2; }

benchmarks=(
  "benchmarks/embed_throughput.py --model ViT-B-32 --device $dev --image-batch $image_batch --text-batch $text_batch --repeats $repeats $([ "$dev" = cuda ] && echo --autocast float16)"
  "benchmarks/text_encoding.py --model ViT-B-32 --device $dev --batch 64 --batches $([ "$dev" = cuda ] && echo 16 || echo 2) --repeats $repeats"
  "benchmarks/train_throughput.py --device $dev --model $train_model --batch-size $train_batch --steps $steps --repeats $([ "$quick" = 1 ] && echo 2 || echo 3)"
)
[ "$bench" = 1 ] || benchmarks=()

if [ "$dry" = 1 ]; then
  echo "python: $python_bin (CUDA: $has_cuda); results to $out"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "would install into $pkgs: ${missing[*]}"
  else
    echo "would install no wheels"
  fi
  echo "would run: $python_bin -m pytest -v --junitxml $out/junit.xml $tests"
  for b in ${benchmarks[@]+"${benchmarks[@]}"}; do echo "would run: $python_bin $b"; done
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "device-check: installing ${#missing[@]} missing packages into $pkgs"
  "$python_bin" -m pip install --disable-pip-version-check --no-index --find-links "$wheels" --no-deps \
    --no-build-isolation --target "$pkgs" "${missing[@]}" > "$out/pip.log" 2>&1 \
    || { tail -n 20 "$out/pip.log" >&2; echo "device-check: pip install failed (full log $out/pip.log)" >&2; exit 1; }
fi

{
  "$python_bin" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no GPU)")'
  nproc
} > "$out/environment.txt" 2>&1
cat "$out/environment.txt"

status=0
# shellcheck disable=SC2086  # $tests is a list of pytest arguments
"$python_bin" -m pytest -v -p no:cacheprovider --junitxml "$out/junit.xml" $tests 2>&1 | tee "$out/pytest.log" | tail -n 25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

: > "$out/benchmarks.txt"
for b in ${benchmarks[@]+"${benchmarks[@]}"}; do
  echo "\$ python $b" | tee -a "$out/benchmarks.txt"
  # shellcheck disable=SC2086
  "$python_bin" $b 2>&1 | tee -a "$out/benchmarks.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
exit "$status"
