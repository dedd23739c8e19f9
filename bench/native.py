"""Native PyTorch: the reference loop on transformers' modules (CPU or CUDA, fp32/bf16) and, on CUDA,
transformers' own Janus `generate` eager and tuned (static KV cache + torch.compile with CUDA graphs), the bar the
browser is measured against."""

import copy

import torch
from transformers import GenerationConfig

from janusweb import metrics
from janusweb.bench.loops import Clock, measure
from janusweb.bench.workload import Inputs, Workload
from janusweb.export.specs import graph_specs
from janusweb.graphs import TorchGraphs


def _sync(device):
    return (lambda: torch.cuda.synchronize()) if device.type == "cuda" else None


def reference_loop(model, inp: Inputs, w: Workload, device: str, dtype: torch.dtype) -> dict:
    """The workload through janusweb.generate on TorchGraphs (model moved to device/dtype): a measurement."""
    model = model.to(device=device, dtype=dtype)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = measure(TorchGraphs(model, graph_specs(model)), inp, w, sync=_sync(dev))
    if dev.type == "cuda":
        out["memory"] = {"gpu_peak_bytes": torch.cuda.max_memory_allocated()}
    return out


def _image_config(inp: Inputs, w: Workload, steps: int, compiled: bool) -> GenerationConfig:
    return GenerationConfig(
        do_sample=True, temperature=w.temperature, guidance_scale=w.guidance, num_return_sequences=w.images,
        max_new_tokens=steps, bos_token_id=inp.ids.bos, pad_token_id=inp.ids.pad, eos_token_id=None,
        generation_kwargs={"boi_token_id": inp.ids.boi}, cache_implementation="static" if compiled else None)


def transformers_generate(model, inp: Inputs, w: Workload, compiled: bool) -> dict:
    """Speed of transformers' own Janus generate on CUDA (bf16), eager or with the language model compiled
    (static cache + mode='reduce-overhead', i.e. CUDA graphs): the image part only, as a whole (its per-step
    figure is the whole generate, prefill included, over its steps). Sampling is torch's: no parity here."""
    model = model.to(device="cuda", dtype=torch.bfloat16)
    lm = model.model.language_model
    original = lm.forward
    if compiled:
        lm.forward = torch.compile(original, mode="reduce-overhead", fullgraph=False, dynamic=False)
    try:
        ids = torch.from_numpy(inp.prompt_ids[None]).cuda()
        cfg = _image_config(inp, w, inp.steps, compiled)
        kwargs = dict(inputs=ids, attention_mask=torch.ones_like(ids), generation_mode="image")
        warm = copy.deepcopy(cfg)
        warm.max_new_tokens = 8  # same static cache size: compiles prefill and decode
        model.generate(**kwargs, generation_config=warm)
        times = []
        for _ in range(w.repeats):
            clock = Clock(torch.cuda.synchronize)
            clock.start()
            model.generate(**kwargs, generation_config=copy.deepcopy(cfg))
            times.append(clock.now())
        total = metrics.median(times)
        return {"figures": {"s_per_image": metrics.s_per_image(total, w.images), "image_step_ms": total / inp.steps},
                "extra": {"note": "image_step_ms = the whole generate (prefill included) / steps; VQ decode not "
                                  "included; torch's sampler: no parity"}}
    finally:
        lm.forward = original


def cuda_label() -> dict:
    if not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": p.name, "gpu_memory_bytes": p.total_memory, "cuda": torch.version.cuda}
