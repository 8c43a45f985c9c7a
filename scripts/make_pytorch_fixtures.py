#!/usr/bin/env python3
"""Generate the PyTorch-checkpoint fixtures of `radit-models`
(crates/models/tests/fixtures/pytorch/).

Each weights fixture is written twice from the same tensors: as `pytorch_model.bin` through
`torch.save` (the format many Hugging Face repos still ship) and as `model.safetensors`
through the safetensors library. The Rust tests load both through the real loaders and
require bitwise-identical logits/embeddings. The malicious fixtures are pickles that would
run a shell command if they were unpickled by Python; the Rust loader must refuse them
without executing anything. Nothing here ever loads a malicious file.

This is run once by a developer (not by CI); its outputs are committed.

Setup (any Python >= 3.10; the CPU or the CUDA wheel both work, only torch.save is used):

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch safetensors numpy

Run (from the repository root):

    /tmp/torchvenv/bin/python scripts/make_pytorch_fixtures.py

Shapes are the tiny configs of crates/models/tests/models.rs: Llama vocab 97, hidden 32,
intermediate 64, 2 layers, 4 heads, 2 KV heads, tied embeddings; BERT vocab 50, hidden 32,
2 layers, 4 heads, intermediate 64, 64 positions, 2 token types. The tests take config.json
and tokenizer.json from radit's own export of a model of the same config.

Files written:
  llama/pytorch_model.bin, llama/model.safetensors      f32 Llama weights
  bert/pytorch_model.bin, bert/model.safetensors        f32 BERT weights
  llama_sharded/pytorch_model-0000{1,2}-of-00002.bin,
  llama_sharded/pytorch_model.bin.index.json            the Llama weights in two shards
  dtypes.bin, dtypes.safetensors                        f32/f16/bf16 tensors and a strided
                                                        view (its twin holds a contiguous
                                                        copy); dtypes.bin also has an int64
                                                        tensor, which radit refuses to read
  dtypes_legacy.bin                                     dtypes.bin in the pre-1.6 non-zip
                                                        format (_use_new_zipfile_serialization=False)
  malicious_zip.bin     torch.save of a state dict whose extra entry reduces to os.system
  malicious_legacy.bin  the same in the legacy non-zip format
  malicious_plain.bin   a bare protocol-2 pickle (GLOBAL) of an os.system reduce
  malicious_proto4.bin  a bare protocol-4 pickle (STACK_GLOBAL) of an os.system reduce
  malicious_popped.bin  an os.system reduce whose result is POPped, then an empty dict:
                        a reader that only looks at the resulting object sees nothing
Every malicious pickle would write MARKER if run; the tests check that it never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "models" / "tests" / "fixtures" / "pytorch"
MARKER = "/tmp/radit-pytorch-fixture-pwned"
COMMAND = f"echo pwned > {MARKER}"


def randn(gen: torch.Generator, *shape: int, scale: float = 0.2) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen) * scale).to(torch.float32)


def llama_state_dict() -> dict[str, torch.Tensor]:
    vocab, hidden, inter, layers, heads, kv_heads = 97, 32, 64, 2, 4, 2
    head_dim = hidden // heads
    gen = torch.Generator().manual_seed(1234)
    sd: dict[str, torch.Tensor] = {"model.embed_tokens.weight": randn(gen, vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}"
        sd[f"{p}.input_layernorm.weight"] = 1.0 + randn(gen, hidden, scale=0.05)
        sd[f"{p}.self_attn.q_proj.weight"] = randn(gen, heads * head_dim, hidden)
        sd[f"{p}.self_attn.k_proj.weight"] = randn(gen, kv_heads * head_dim, hidden)
        sd[f"{p}.self_attn.v_proj.weight"] = randn(gen, kv_heads * head_dim, hidden)
        sd[f"{p}.self_attn.o_proj.weight"] = randn(gen, hidden, heads * head_dim)
        sd[f"{p}.post_attention_layernorm.weight"] = 1.0 + randn(gen, hidden, scale=0.05)
        sd[f"{p}.mlp.gate_proj.weight"] = randn(gen, inter, hidden)
        sd[f"{p}.mlp.up_proj.weight"] = randn(gen, inter, hidden)
        sd[f"{p}.mlp.down_proj.weight"] = randn(gen, hidden, inter)
    sd["model.norm.weight"] = 1.0 + randn(gen, hidden, scale=0.05)
    return sd


def bert_state_dict() -> dict[str, torch.Tensor]:
    vocab, hidden, inter, layers, positions, types = 50, 32, 64, 2, 64, 2
    gen = torch.Generator().manual_seed(5678)
    sd: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": randn(gen, vocab, hidden),
        "embeddings.position_embeddings.weight": randn(gen, positions, hidden),
        "embeddings.token_type_embeddings.weight": randn(gen, types, hidden),
        "embeddings.LayerNorm.weight": 1.0 + randn(gen, hidden, scale=0.05),
        "embeddings.LayerNorm.bias": randn(gen, hidden, scale=0.05),
    }

    def linear(name: str, out_f: int, in_f: int) -> None:
        sd[f"{name}.weight"] = randn(gen, out_f, in_f)
        sd[f"{name}.bias"] = randn(gen, out_f, scale=0.05)

    def layer_norm(name: str) -> None:
        sd[f"{name}.weight"] = 1.0 + randn(gen, hidden, scale=0.05)
        sd[f"{name}.bias"] = randn(gen, hidden, scale=0.05)

    for i in range(layers):
        p = f"encoder.layer.{i}"
        linear(f"{p}.attention.self.query", hidden, hidden)
        linear(f"{p}.attention.self.key", hidden, hidden)
        linear(f"{p}.attention.self.value", hidden, hidden)
        linear(f"{p}.attention.output.dense", hidden, hidden)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", inter, hidden)
        linear(f"{p}.output.dense", hidden, inter)
        layer_norm(f"{p}.output.LayerNorm")
    return sd


def write_twins(directory: Path, sd: dict[str, torch.Tensor]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(sd, directory / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / "model.safetensors"))


def write_sharded(directory: Path, sd: dict[str, torch.Tensor]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate([names[:half], names[half:]], start=1):
        file = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({k: sd[k] for k in part}, directory / file)
        weight_map.update({k: file for k in part})
    index = {"metadata": {"total_size": sum(t.numel() * 4 for t in sd.values())},
             "weight_map": weight_map}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")


def dtypes_state_dict() -> dict[str, torch.Tensor]:
    values = torch.tensor([1.5, -0.25, 65504.0, 3.0e-5, 0.1, -7.0], dtype=torch.float32)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8.0
    return {
        "f32": values.clone().reshape(2, 3),
        "f16": values.to(torch.float16),
        "bf16": values.to(torch.bfloat16).reshape(3, 2),
        # A non-contiguous view into `base`'s storage: rows 1.., every other column.
        "strided": base[1:, ::2],
        "base": base,
        "int64": torch.arange(5, dtype=torch.int64),
    }


class Evil:
    """Unpickling this runs COMMAND (os.system resolves to posix.system on Linux)."""

    def __reduce__(self):
        return (os.system, (COMMAND,))


def popped_pickle() -> bytes:
    # PROTO 2; GLOBAL posix system; (COMMAND,); REDUCE; POP; EMPTY_DICT; STOP.
    command = COMMAND.encode()
    return (b"\x80\x02" + b"cposix\nsystem\n" + b"X" + len(command).to_bytes(4, "little")
            + command + b"\x85" + b"R" + b"0" + b"}" + b".")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    write_twins(OUT / "llama", llama_state_dict())
    write_twins(OUT / "bert", bert_state_dict())
    write_sharded(OUT / "llama_sharded", llama_state_dict())

    dtypes = dtypes_state_dict()
    torch.save(dtypes, OUT / "dtypes.bin")
    torch.save(dtypes, OUT / "dtypes_legacy.bin", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in dtypes.items() if k != "int64"},
              str(OUT / "dtypes.safetensors"))

    # torch.save only calls Evil.__reduce__ (which returns a tuple); nothing runs.
    evil_sd = {"weight": torch.ones(2, 2), "payload": Evil()}
    torch.save(evil_sd, OUT / "malicious_zip.bin")
    torch.save(evil_sd, OUT / "malicious_legacy.bin", _use_new_zipfile_serialization=False)
    (OUT / "malicious_plain.bin").write_bytes(pickle.dumps(Evil(), protocol=2))
    (OUT / "malicious_proto4.bin").write_bytes(pickle.dumps(Evil(), protocol=4))
    (OUT / "malicious_popped.bin").write_bytes(popped_pickle())
    assert not os.path.exists(MARKER), f"{MARKER} exists: something ran a payload"

    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>8}  {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
