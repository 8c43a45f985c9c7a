"""Reference RoPE inverse frequencies (default and Llama-3 scaling) from transformers.

Run once by a developer (not CI), with the venv described in make_model_fixtures.py:
    /tmp/refenv/bin/python scripts/make_rope_fixture.py
Writes crates/models/tests/fixtures/rope_inv_freq.json.
"""
import json

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

out = {}
llama3 = LlamaConfig(
    hidden_size=2048, num_attention_heads=32, head_dim=64, rope_theta=500000.0,
    max_position_embeddings=131072,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
)
inv, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](llama3, "cpu")
out["llama3"] = {
    "config": {"head_dim": 64, "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "inv_freq": [float(x) for x in inv.tolist()],
    "attention_factor": attention_factor,
}
smollm2 = LlamaConfig(hidden_size=576, num_attention_heads=9, rope_theta=100000.0)
out["default"] = {
    "config": {"head_dim": 64, "rope_theta": 100000.0},
    "inv_freq": [float(x) for x in LlamaRotaryEmbedding(smollm2).inv_freq.tolist()],
}
out["reference"] = {"transformers": transformers.__version__, "torch": torch.__version__,
                    "script": "scripts/make_rope_fixture.py"}
with open("crates/models/tests/fixtures/rope_inv_freq.json", "w") as f:
    json.dump(out, f, indent=1)
