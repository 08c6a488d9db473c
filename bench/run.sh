#!/usr/bin/env bash
# The performance run of docs/performance.md, in one command:
#   bench/run.sh [run_peer_bench.sh options, e.g. --quick, --repeat 3, --model mnist]
# Makes the shared bench's models (seeded: the same bytes the peer serves), archives them for
# tsserve (mnist with examples/mnist's handler, resnet18 with image_classifier), starts tsserve
# on 127.0.0.1:18080-18082, and runs ../shared/bench/run_peer_bench.sh with tsserve as its
# --target, so tsserve, the Flask peer, the naive server and raw onnxruntime are measured in
# one run. Needs what run_peer_bench.sh needs (it says what is missing).
# The `defaults` cell is tsserve as a user meets it: the README's first command as written (its
# config.properties, ports 8080-8082, the model-store archives, `--models all`), plus resnet18
# archived with image_classifier and nothing else. It runs from a folder of its own, so the two
# servers' --stop tell them apart. The `ceiling` cell is bench/ceiling.mjs on :18095: the same job
# in one Node process (Fastify, the same decoding, batched onnxruntime, no IPC), what tsserve's
# process isolation is measured against.
# Knobs: MNIST_WORKERS (2), RESNET_WORKERS (2), RESNET_ADAPTIVE (true), TSSERVE_BATCH (8),
# TSSERVE_DELAY (ms, 0); ALL=1 then runs bench/open-loop.mjs (overload, cold start) and
# bench/density.mjs (50 + 5 models) too, once these servers have stopped, into the same results
# folder (open-loop.txt, density.txt): every figure of docs/performance.md's first table in one run. Workers x onnxruntime threads never exceed the cores: tsserve gives each
# worker cores/workers threads. mnist is decode-bound, so two single-threaded workers decode in
# parallel. resnet18 is model-bound: a lone request is answered fastest with both cores' threads,
# a loaded server fastest by single-threaded workers (no waiting on each other's threads, one
# decodes while the other infers); adaptiveThreads gives it both (README, "Threads follow the load").
set -euo pipefail
# onnxruntime's telemetry off in every process of the run, the peers' Python onnxruntime included:
# tsserve's workers run without it (docs/deploy.md, "No telemetry"), and a bench sends nothing out.
export ORT_DISABLE_TELEMETRY=1
cd "$(dirname "$0")/.."
shared=$(cd "${SHARED_BENCH:-../shared/bench}" && pwd)
work=$(mktemp -d /tmp/tsserve-bench.XXXXXX)
repo=$PWD
defaults="$work/defaults"
stop_all() {
  [ -n "${ceiling_pid:-}" ] && kill "$ceiling_pid" 2>/dev/null || true
  node bin/tsserve.js --stop >/dev/null 2>&1 || true
  [ -d "$defaults" ] && (cd "$defaults" && node "$repo/bin/tsserve.js" --stop >/dev/null 2>&1 || true)
  rm -rf "$work"
}
trap stop_all EXIT

/usr/bin/python3 "$shared/make_models.py" "$work/models" >/dev/null
mnist_workers=${MNIST_WORKERS:-2}
resnet_workers=${RESNET_WORKERS:-2}
mkdir -p "$work/model-store"
archive() { # name handler workers adaptiveThreads
  printf 'minWorkers: %s\nmaxWorkers: %s\nbatchSize: %s\nmaxBatchDelay: %s\nadaptiveThreads: %s\n' \
    "$3" "$3" "${TSSERVE_BATCH:-8}" "${TSSERVE_DELAY:-0}" "$4" > "$work/$1.yaml"
  node bin/tsserve-archiver.js --model-name "$1" --version 1.0 --serialized-file "$work/models/$1.onnx" \
    --handler "$2" --config-file "$work/$1.yaml" --export-path "$work/model-store" --force >/dev/null
}
archive mnist examples/mnist/mnist_handler.ts "$mnist_workers" false
archive resnet18 image_classifier "$resnet_workers" "${RESNET_ADAPTIVE:-true}"

cat > "$work/config.properties" <<PROPS
inference_address=http://127.0.0.1:18080
management_address=http://127.0.0.1:18081
metrics_address=http://127.0.0.1:18082
grpc_inference_port=17070
grpc_management_port=17071
model_store=$work/model-store
PROPS
node bin/tsserve.js --start --ts-config "$work/config.properties" --model-store "$work/model-store" \
  --models mnist=mnist.mar,resnet18=resnet18.mar --disable-token-auth --ncs

mkdir -p "$defaults/model-store"
cp config.properties "$defaults/"
cp model-store/*.mar "$defaults/model-store/"
node bin/tsserve-archiver.js --model-name resnet18 --version 1.0 --serialized-file "$work/models/resnet18.onnx" \
  --handler image_classifier --export-path "$defaults/model-store" --force >/dev/null
(cd "$defaults" && node "$repo/bin/tsserve.js" --start --model-store model-store --models all --disable-token-auth)

node bench/ceiling.mjs --models "$work/models" --port 18095 >/dev/null &
ceiling_pid=$!

cores=$(nproc)
for server_model_workers in "18081 mnist $mnist_workers" "18081 resnet18 $resnet_workers" "8081 mnist $cores" "8081 resnet18 $cores"; do
  read -r port model want <<<"$server_model_workers"
  for _ in $(seq 1 100); do
    n=$(curl -s "http://127.0.0.1:$port/models/$model" | grep -c '"READY"' || true)
    [ "$n" -ge "$want" ] && break
    sleep 0.3
  done
done
for _ in $(seq 1 100); do curl -s -o /dev/null -X POST http://127.0.0.1:18095/predictions/none && break; sleep 0.3; done

# Results go to bench/results/<time>/ of this project unless --out says otherwise.
results="$PWD/bench/results/$(date +%Y%m%d-%H%M%S)"
out=(--out "$results")
args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[$i]}" = --out ]; then results=${args[$((i + 1))]}; out=(); fi
done
"$shared/run_peer_bench.sh" --target 'http://127.0.0.1:18080/predictions/{model}' --label tsserve \
  --target 'http://127.0.0.1:8080/predictions/{model}' --label defaults \
  --target 'http://127.0.0.1:18095/predictions/{model}' --label ceiling "${out[@]}" "$@"

if [ "${ALL:-0}" = 1 ]; then
  stop_all
  trap - EXIT
  node bench/open-loop.mjs | tee "$results/open-loop.txt"
  node bench/density.mjs | tee "$results/density.txt"
fi
