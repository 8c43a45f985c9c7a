#!/usr/bin/env bash
# On a machine with one NVIDIA GPU (the device tool; prepared here by scripts/device-prepare.sh,
# carried as .device/ and .gl/): radit's wgpu parity tests, then W1, W2, W3 and W5 on
# `--device wgpu` at SmolLM2-135M size (hidden 576, 30 layers, 9 heads, FFN 1536, vocab 49152;
# all heads as KV heads, which the bench flags do not separate), each with its throughput and
# achieved TFLOP/s. About 5 minutes on an H200; well under the tool's 9-minute budget.
#
#   scripts/device-bench.sh            the GPU run
#   QUICK=1 scripts/device-bench.sh    tiny shapes, for checking the script on lavapipe here
# Env: RADIT (default: the carried .device/radit.xz, else target/release/radit), TESTS (default:
# the carried models test binary), OUT (where the JSON lines go; the device tool sets it).
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .gl/*.deb >/dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
# The carried binaries, unpacked outside the working tree.
for name in radit models-tests; do
  if [ -f ".device/$name.xz" ] && [ ! -x "/tmp/radit-device/$name" ]; then
    mkdir -p /tmp/radit-device
    xz -dc ".device/$name.xz" > "/tmp/radit-device/$name" && chmod +x "/tmp/radit-device/$name"
  fi
done
RADIT=${RADIT:-$( [ -x /tmp/radit-device/radit ] && echo /tmp/radit-device/radit || echo target/release/radit )}
TESTS=${TESTS:-/tmp/radit-device/models-tests}
out=${OUT:-/tmp/device-bench}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "radit: $RADIT ($("$RADIT" --version))"

echo "== wgpu parity (models tests: wgpu forward vs CPU)"
if [ -x "$TESTS" ]; then
  RADIT_WGPU_TESTS=1 "$TESTS" wgpu 2>&1 | tail -4
else
  echo "no $TESTS (scripts/device-prepare.sh builds it); skipped"
fi

if [ "${QUICK:-0}" = 1 ]; then
  llama=(--hidden 64 --layers 2 --heads 4 --ffn 128 --vocab 512)
  bert=(--hidden 64 --layers 2 --heads 4 --ffn 128 --vocab 512)
  steps=(--steps 1 --warmup 1); reps=(--repeats 1 --warmup 1)
  lsr=(--sequences 16); gen=(--new-tokens 8)
else
  llama=(--hidden 576 --layers 30 --heads 9 --ffn 1536 --vocab 49152)
  bert=()
  steps=(--steps 5 --warmup 2); reps=(--repeats 3 --warmup 1)
  lsr=(); gen=()
fi
bench() { # NAME ARGS... : one JSON line into $out/NAME.json
  local name=$1; shift
  echo "== $name: radit --device wgpu bench $*"
  if "$RADIT" --device wgpu bench "$@" --json > "$out/$name.json" 2> "$out/$name.err"; then
    cat "$out/$name.json"
  else
    echo "failed:"; tail -5 "$out/$name.err"
  fi
}
bench w1 lm-ft "${llama[@]}" "${steps[@]}"
bench w2 r-ft "${bert[@]}" "${steps[@]}"
bench w3 lsr "${llama[@]}" "${lsr[@]}" "${reps[@]}"
bench w5 generate "${llama[@]}" "${gen[@]}" "${reps[@]}"

# Throughput and achieved TFLOP/s from the JSON lines: matmul FLOPs of each workload (2 per
# multiply-add; training = 3 × forward; attention's QKᵀ and AV included; LM head on the rows
# radit computes it for).
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name + ".json")))
    except Exception:
        return None
def llama_layer(r):
    h, f = r["hidden"], r["ffn"]
    return 4 * h * h + 3 * h * f
rows = []
w1 = load("w1")
if w1:
    b, s, a, L, h = w1["batch"], w1["seq"], w1["answer"], w1["layers"], w1["hidden"]
    fwd = 2 * L * llama_layer(w1) * b * s + 4 * L * b * s * s * h + 2 * b * a * h * w1["vocab"]
    t = w1["step_median_s"]
    rows.append(("W1 LM-ft step", f'{w1["tokens_per_s_median"]:.0f} tokens/s', 3 * fwd / t))
w2 = load("w2")
if w2:
    q, s, L, h, f = w2["queries"], w2["seq"], w2["layers"], w2["hidden"], w2["ffn"]
    fwd = 2 * L * (4 * h * h + 2 * h * f) * q * s + 4 * L * q * s * s * h
    rows.append(("W2 R-ft step", f'{w2["queries_per_s_median"]:.1f} queries/s', 3 * fwd / w2["step_median_s"]))
w3 = load("w3")
if w3:
    n, s, L, h = w3["sequences"], w3["seq"], w3["layers"], w3["hidden"]
    fwd = 2 * L * llama_layer(w3) * n * s + 4 * L * n * s * s * h + 2 * n * w3["answer"] * h * w3["vocab"]
    rows.append(("W3 LSR scoring", f'{w3["sequences_per_s_median"]:.1f} sequences/s', fwd / w3["pass_median_s"]))
w5 = load("w5")
if w5:
    L, h, p, new = w5["layers"], w5["hidden"], w5["prompt"], w5["new_tokens"]
    for r in w5["results"]:
        b = r["batch"]
        per_token = 2 * (L * llama_layer(w5) + h * w5["vocab"])
        prefill = b * (2 * L * llama_layer(w5) * p + 4 * L * p * p * h)
        decode = b * sum(per_token + 4 * L * (p + i) * h for i in range(new))
        rows.append((f"W5 generation b{b}", f'{r["new_tokens_per_s_median"]:.0f} new tokens/s', (prefill + decode) / r["run_median_s"]))
print(f'{"workload":22}{"throughput (median)":>26}{"TFLOP/s":>10}')
for name, rate, flops in rows:
    print(f"{name:22}{rate:>26}{flops / 1e12:10.3f}")
PY
