#!/usr/bin/env bash
# Here, before a device session: what scripts/device-bench.sh needs on a GPU machine that has
# no Rust toolchain and no package registry. Builds radit and the models test binary (release),
# strips and xz-compresses them into .device/ (the device tool carries at most 64 MiB: about
# 20 + 17 MB), and downloads the Vulkan loader packages into .gl/ (the device README's recipe);
# both folders are git-ignored locally.
#
#   scripts/device-prepare.sh
#   then, with the device tool: run(command="scripts/device-bench.sh", carry=[".device", ".gl"])
set -euo pipefail
cd "$(dirname "$0")/.."
for d in /.device/ /.gl/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
mkdir -p .device .gl
CARGO_INCREMENTAL=0 cargo build --release -p radit
tests=$(CARGO_INCREMENTAL=0 cargo test --release -p radit-models --test models --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="models": print(m["executable"])' | tail -1)
rm -f .device/*
for pair in "radit:target/release/radit" "models-tests:$tests"; do
  name=${pair%%:*}
  strip -o "/tmp/$name.stripped" "${pair#*:}"
  xz -T0 -6 -c "/tmp/$name.stripped" > ".device/$name.xz"
  rm -f "/tmp/$name.stripped"
done
if ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .device .gl
