#!/usr/bin/env bash
# The GPU check of the project in one command: the gpu-marked tests first, then every
# benchmark, then the figures appended to BENCHMARKS.md as Markdown tables headed with the
# GPU's name, the commit and the date. About 8 minutes on one GPU.
#
#   bench/gpu_suite.sh                        # on the GPU: tests, all benchmarks, append to BENCHMARKS.md
#   bench/gpu_suite.sh --device cpu --quick   # proof that the suite runs (small sizes, < 10 min on 2 cores);
#                                             # prints the section instead of appending it (add --append to keep it)
#
# Exit status: non-zero when a test failed or a benchmark crashed (the other benchmarks still run).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 append=1
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; append=0; shift ;;
        --append) append=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
results=$(mktemp /tmp/gpu-suite.XXXXXX.jsonl)
status=0
started=$(date +%s)

step() {  # step NAME COMMAND...: run a benchmark, keep its JSON lines, note a crash
    echo "== $1" >&2
    shift
    if ! "$@" | tee -a "$results"; then
        echo "{\"bench\": \"suite\", \"failed\": \"$*\"}" >> "$results"
        status=1
    fi
}

echo "== gpu-marked tests" >&2
tests_out=$("$python" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1)
tests_rc=$?
echo "$tests_out" | tail -25 >&2
summary=$(echo "$tests_out" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//; s/"/'"'"'/g')
echo "{\"bench\": \"gpu_tests\", \"device\": \"$device\", \"result\": \"$summary\"}" >> "$results"
# 5: nothing collected is not a failure on a machine whose tests all skip
if [ $tests_rc -ne 0 ] && [ $tests_rc -ne 5 ]; then status=1; fi

if [ $quick -eq 1 ]; then
    step "CLIP loop" "$python" bench/clip_loop.py --device "$device" --sizes 128 --cutn 8 --steps 2
    step "CLIP loop, compiled" "$python" bench/clip_loop.py --device "$device" --sizes 64 --cutn 4 --steps 2 \
        --warmup 1 --compile
    step "precision" "$python" bench/precision.py --device "$device" --size 64 --steps 3
    step "prior" "$python" bench/prior.py --device "$device" --layers 1 --batches 1 --sliding-grid 0
    step "upscale" "$python" bench/upscale.py --device "$device" --models general-x4v3 --sizes 256 --tiles 0 256
else
    step "CLIP loop" "$python" bench/clip_loop.py --device "$device" --sizes 256 512 768 1024 --cutn 32
    step "CLIP loop, 64 cutouts" "$python" bench/clip_loop.py --device "$device" --sizes 512 --cutn 64
    step "CLIP loop, compiled" "$python" bench/clip_loop.py --device "$device" --sizes 512 --cutn 32 --warmup 3 \
        --compile
    step "precision (auto)" "$python" bench/precision.py --device "$device" --size 512 --steps 20
    step "precision (fp16)" "$python" bench/precision.py --device "$device" --size 512 --steps 20 --precision fp16
    step "prior" "$python" bench/prior.py --device "$device"
    step "upscale" "$python" bench/upscale.py --device "$device"
fi

elapsed=$(( $(date +%s) - started ))
echo "{\"bench\": \"suite\", \"seconds\": $elapsed, \"quick\": $quick}" >> "$results"
title="Suite run on $device$([ $quick -eq 1 ] && echo ' (quick: proves the suite runs; not figures to compare)')"
command="bench/gpu_suite.sh --device $device$([ $quick -eq 1 ] && echo ' --quick')"
if [ $append -eq 1 ]; then
    "$python" bench/report.py "$results" --title "$title" --command "$command" --append BENCHMARKS.md \
        && echo "appended to BENCHMARKS.md (raw results: $results)" >&2
else
    "$python" bench/report.py "$results" --title "$title" --command "$command"
fi
echo "suite finished in ${elapsed}s with status $status" >&2
exit $status
