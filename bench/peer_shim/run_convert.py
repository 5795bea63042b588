"""run_convert.py CONVERT_HF_TO_GGUF.PY ARGS...: runs llama.cpp's converter under Debian's Python
packages, for bench/peer_llamacpp.sh.

Debian 12's torch is 1.13, older than the converter expects: its dtype tables name
torch.float8_e4m3fn and torch.float8_e5m2 (torch >= 2.1) as dictionary keys. Where torch lacks
them, they are given stand-ins that no real tensor has, so the tables build and a checkpoint that
really holds fp8 tensors fails at its first lookup instead of converting wrongly (cairn's
synthetic checkpoints are bf16). This folder goes at the END of the module path, so its
transformers and sentencepiece stand-ins (see their docstrings) are used only where the real
packages are missing. Nothing else is changed; the converter runs as __main__.
"""
import os
import runpy
import sys

import torch


class _MissingDtype:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name} (missing in torch {torch.__version__})"


for _name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, _name):
        setattr(torch, _name, _MissingDtype(_name))

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
