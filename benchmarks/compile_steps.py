"""Does ``torch.compile`` pay for CPU fine-tuning? Per-step CPU seconds of minilm, eager vs compiled.

    .venv/bin/python benchmarks/compile_steps.py VARIANT [--steps 2] [--length 512]

One process per variant (compile caches are per process); each runs one
warm-up step (for the compiled variants: the compile, timed as ``first_s``)
then ``--steps`` timed training steps of the packaged all-MiniLM-L6-v2 with
batch 16 at ``--length`` tokens (half the rows padded to half length), bf16
autocast, AdamW, the way :mod:`multitype.transformer.train` steps. CPU seconds
(``time.process_time``) are reported besides wall seconds because the shared
machine's load moves wall time 2-3x. Variants:

* ``eager``: no compile;
* ``fp32``: no compile, no bf16 autocast;
* ``regional``: each encoder layer compiled in place, dynamic shapes (what ``compile: true`` did first);
* ``static``: the same with static shapes (one compile per length);
* ``fallback``: ``regional`` with dropout masks from aten's generator (``compile: true`` on CPU now);
* ``nodrop``: eager without attention dropout (not a compile variant: what attention dropout costs).

The figures behind ``compile: auto`` are in ``benchmarks/results/compile_steps.json`` (written by hand
from this script's lines). Never run by ``make test``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from multitype.transformer.models import packaged_minilm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=["eager", "fp32", "regional", "static", "fallback", "nodrop"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--length", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(packaged_minilm()), num_labels=4,
                                                               attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        ids = torch.randint(1000, 20000, (16, args.length))
        mask = torch.ones_like(ids)
        mask[:8, args.length // 2:] = 0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.variant != "fp32"):
            logits = model(input_ids=ids, attention_mask=mask).logits
        F.cross_entropy(logits.float(), torch.zeros(16, dtype=torch.long)).backward()
        optimizer.step()
        optimizer.zero_grad()

    if args.variant == "fallback":
        import torch._inductor.config as inductor

        inductor.fallback_random = True
    if args.variant in ("regional", "static", "fallback"):
        for layer in model.bert.encoder.layer:
            layer.compile(dynamic=args.variant != "static")
    if args.variant == "nodrop":
        for layer in model.bert.encoder.layer:
            layer.attention.self.dropout.p = 0.0
    started = time.perf_counter()
    step()
    out = {"variant": args.variant, "first_s": round(time.perf_counter() - started, 1), "steps": []}
    for _ in range(args.steps):
        cpu, wall = time.process_time(), time.perf_counter()
        step()
        out["steps"].append({"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
