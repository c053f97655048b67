#!/usr/bin/env bash
# Rewrites src/function-order.txt: the functions of the adapter that start-up, one relist and
# the HPA's request execute in cluster mode, in the order they first run. build.rs hands the
# file to the linker, which places those functions side by side, so that only they (and not
# the whole 14 MB of code) become resident; see build.rs for why.
#
# Run it after a dependency or toolchain update (names carry hashes that change then). A stale
# file costs only idle memory, never correctness: names the linker does not find are skipped.
#
# Needs valgrind (callgrind) and jq; takes two release builds (about 8 minutes) and two
# 20-second runs of the cluster bench's idle phase under callgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind jq; do
    command -v "$tool" >/dev/null || { echo "order-functions: $tool is needed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The executable cargo built for `target` (by name), from its JSON messages on stdin.
built() {
    jq -r --arg name "$1" 'select(.reason == "compiler-artifact" and .target.name == $name and .executable != null) | .executable' | tail -n1
}

# The names differ between the `release` profile (cargo build --release, the image's build) and
# the `bench` profile (cargo bench), so both builds are traced and the file holds the union.
# Both profiles write the adapter to the same path: each is copied away once built.
mkdir -p "$work/release" "$work/bench"
cp "$(cargo build -j2 --release --locked --bin prom-metrics-adapter --message-format=json | built prom-metrics-adapter)" \
    "$work/release/prom-metrics-adapter"
messages=$(cargo bench -j2 --locked --bench cluster --no-run --message-format=json)
bench=$(built cluster <<< "$messages")
cp "$(built prom-metrics-adapter <<< "$messages")" "$work/bench/prom-metrics-adapter"

for profile in release bench; do
    echo "order-functions: tracing the $profile build" >&2
    # Without --bench the cluster bench stops after its idle figure: start-up, one relist and
    # one HPA request, the path whose code should stay resident.
    CLUSTER_PODS=50 \
    CLUSTER_ADAPTER_BIN="$work/$profile/prom-metrics-adapter" \
    CLUSTER_ADAPTER_WRAPPER="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$work/$profile.callgrind" \
        "$bench" >&2
done

# Callgrind names each object (ob=) and function (fn=) once in full, "(id) name", then by id
# alone; cob=/cfn= (callees) define ids too. A function belongs to the object last named by ob=.
awk '
    FNR == 1 { delete objects; delete functions; ours = 0 }
    function define(table, rest,    id, name) {
        id = rest; sub(/\).*/, "", id); sub(/^\(/, "", id)
        name = rest; if (sub(/^\([0-9]+\) /, "", name)) table[id] = name
        return id
    }
    /^(ob|cob|fn|cfn)=/ {
        key = substr($0, 1, index($0, "=") - 1)
        rest = substr($0, index($0, "=") + 1)
        if (key == "ob" || key == "cob") {
            id = define(objects, rest)
            if (key == "ob") ours = (objects[id] ~ /\/prom-metrics-adapter$/)
        } else {
            id = define(functions, rest)
            if (key == "fn" && ours && !(functions[id] in seen)) {
                seen[functions[id]] = 1
                print functions[id]
            }
        }
    }
' "$work/release.callgrind" "$work/bench.callgrind" > "$work/order.txt"

# The awk above resets its id tables per file, but keeps `seen`, so the union is in first-seen
# order: the release build's names first.
count=$(wc -l < "$work/order.txt")
if [ "$count" -lt 1000 ]; then
    echo "order-functions: only $count functions traced; keeping the old file" >&2
    exit 1
fi
mv "$work/order.txt" src/function-order.txt
echo "order-functions: wrote $count names to src/function-order.txt" >&2
