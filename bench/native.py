"""Native PyTorch backends: the reference loop on transformers' modules (CPU or CUDA, fp32/bf16) and, on
CUDA, transformers' own Janus `generate` eager and tuned (static KV cache + torch.compile with CUDA graphs),
the bar the browser is measured against."""

import copy
import time

import torch
from transformers import GenerationConfig

from janusweb.bench.loops import measure
from janusweb.bench.timing import median
from janusweb.bench.workload import Inputs, Workload
from janusweb.export.specs import graph_specs
from janusweb.graphs import TorchGraphs


def _sync(device):
    return (lambda: torch.cuda.synchronize()) if device.type == "cuda" else None


def reference_loop(model, inp: Inputs, w: Workload, device: str, dtype: torch.dtype) -> dict:
    """The workload through janusweb.generate on TorchGraphs (model moved to device/dtype)."""
    model = model.to(device=device, dtype=dtype)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = measure(TorchGraphs(model, graph_specs(model)), inp, w, sync=_sync(dev))
    if dev.type == "cuda":
        out["memory"] = {"gpu_peak_bytes": torch.cuda.max_memory_allocated()}
    return out


def _image_config(inp: Inputs, n: int, steps: int, compiled: bool) -> GenerationConfig:
    return GenerationConfig(
        do_sample=True, temperature=1.0, guidance_scale=5.0, num_return_sequences=n, max_new_tokens=steps,
        bos_token_id=inp.ids.bos, pad_token_id=inp.ids.pad, eos_token_id=None,
        generation_kwargs={"boi_token_id": inp.ids.boi}, cache_implementation="static" if compiled else None)


def transformers_generate(model, inp: Inputs, w: Workload, compiled: bool) -> dict:
    """Speed of transformers' own Janus generate on CUDA (bf16), eager or with the language model compiled
    (static cache + mode='reduce-overhead', i.e. CUDA graphs). Sampling is torch's: no parity here."""
    model = model.to(device="cuda", dtype=torch.bfloat16)
    lm = model.model.language_model
    original = lm.forward
    if compiled:
        lm.forward = torch.compile(original, mode="reduce-overhead", fullgraph=False, dynamic=False)
    try:
        ids = torch.from_numpy(inp.prompt_ids[None]).cuda()
        out = {"generation": {}}
        for n in w.image_counts:
            cfg = _image_config(inp, n, inp.dims.num_image_tokens, compiled)
            kwargs = dict(inputs=ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                          generation_config=copy.deepcopy(cfg))
            warm = copy.deepcopy(cfg)
            warm.max_new_tokens = 8  # same static cache size: compiles prefill and decode
            model.generate(**{**kwargs, "generation_config": warm})
            times = []
            for _ in range(w.repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model.generate(**{**kwargs, "generation_config": copy.deepcopy(cfg)})
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            s = median(times)
            out["generation"][str(n)] = {"s_per_image": s / n,
                                         "ms_per_step": {"mean": s * 1000 / inp.dims.num_image_tokens,
                                                         "p50": None, "p95": None, "n": 0}}
        out["note"] = "ms per step = whole generate (prefill included) / steps; VQ decode not included"
        return out
    finally:
        lm.forward = original


def cuda_label() -> dict:
    if not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": p.name, "gpu_memory_bytes": p.total_memory, "cuda": torch.version.cuda}
