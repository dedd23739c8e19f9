"""native-cpu and native-cuda: PyTorch on transformers' modules (bench/native.py), the reference loop at fp32 (and
bf16 on CUDA); native-cuda-generate and native-cuda-compiled: transformers' own `generate`, eager and with static
cache + torch.compile, bf16, image part only. The CUDA backends run on their own GPU copy of the model, so the
shared CPU model stays fp32 for the others."""

import contextlib
import copy

from janusweb.bench.backends import Backend


def _label(device: str, runner: str) -> dict:
    import torch

    from janusweb.bench import native
    return {"device": device, "torch": torch.__version__, **native.cuda_label(), "runner": runner}


def _dtype(name: str):
    import torch
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


class NativeCpu(Backend):
    name, own_dtypes = "native-cpu", ("fp32",)

    def run(self, ctx, case: dict, work, session) -> dict:
        from janusweb.bench import native
        m = native.reference_loop(ctx.model(work.bundle), work.inputs, work.workload, "cpu", _dtype(case["dtype"]))
        return {**m, "label": _label("cpu", "reference loop")}


class _Cuda(Backend):
    def unavailable(self, ctx) -> str | None:
        import torch
        return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"

    @contextlib.contextmanager
    def session(self, ctx, bundle):
        import torch
        gpu = copy.deepcopy(ctx.model(bundle)).to("cuda")
        try:
            yield gpu
        finally:
            del gpu
            torch.cuda.empty_cache()


class NativeCuda(_Cuda):
    name, own_dtypes = "native-cuda", ("fp32", "bf16")

    def session_key(self, case: dict) -> tuple:
        return (self.name, case["bundle"], case["dtype"])  # a fresh GPU copy per dtype: bf16 rounds the weights

    def run(self, ctx, case: dict, work, gpu) -> dict:
        from janusweb.bench import native
        m = native.reference_loop(gpu, work.inputs, work.workload, "cuda", _dtype(case["dtype"]))
        return {**m, "label": _label("cuda", "reference loop")}


class NativeCudaGenerate(_Cuda):
    name, compiled, runner = "native-cuda-generate", False, "transformers generate"
    own_dtypes = ("bf16",)

    def refuses(self, case: dict) -> str | None:
        return f"{self.name} times the image part only (images 0)" if not case["images"] else None

    def run(self, ctx, case: dict, work, gpu) -> dict:
        from janusweb.bench import native
        return {**native.transformers_generate(gpu, work.inputs, work.workload, self.compiled),
                "label": _label("cuda", self.runner)}


class NativeCudaCompiled(NativeCudaGenerate):
    name, compiled, runner = "native-cuda-compiled", True, "transformers generate, static cache + torch.compile"
