"""native-cpu and native-cuda: PyTorch on transformers' modules (bench/native.py). native-cuda runs on its own
GPU copy of the model (fp32, then cast to bf16 in that copy), so the shared CPU model stays fp32 for the others."""

import contextlib
import copy

import torch

from janusweb.bench import native
from janusweb.bench.backends import Backend, BenchContext
from janusweb.bench.rows import Row

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GENERATE = {"native-cuda-eager": (False, "transformers generate"),
            "native-cuda-tuned": (True, "transformers generate, static cache + torch.compile")}


def _label(device: str, runner: str) -> dict:
    return {"device": device, "torch": torch.__version__, **native.cuda_label(), "runner": runner}


class NativeCpu(Backend):
    name = "native-cpu"

    def cases(self, ctx: BenchContext) -> list:
        return [Row(self.name, "fp32")]

    def run(self, ctx: BenchContext, case: Row, session) -> Row:
        result = native.reference_loop(ctx.model, ctx.inp, ctx.w, "cpu", torch.float32)
        return Row(case.name, case.dtype, label=_label("cpu", "reference loop"), result=result)


class NativeCuda(Backend):
    name = "native-cuda"

    def cases(self, ctx: BenchContext) -> list:
        return [Row(self.name, "fp32"), Row(self.name, "bf16"), *(Row(n, "bf16") for n in GENERATE)]

    def unavailable(self, ctx: BenchContext) -> str | None:
        return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"

    @contextlib.contextmanager
    def session(self, ctx: BenchContext):
        gpu = copy.deepcopy(ctx.model).to("cuda")
        try:
            yield gpu
        finally:
            del gpu
            torch.cuda.empty_cache()

    def run(self, ctx: BenchContext, case: Row, gpu) -> Row:
        if case.name in GENERATE:
            compiled, runner = GENERATE[case.name]
            result = native.transformers_generate(gpu, ctx.inp, ctx.w, compiled)
        else:
            runner = "reference loop"
            result = native.reference_loop(gpu, ctx.inp, ctx.w, "cuda", DTYPES[case.dtype])
        return Row(case.name, case.dtype, label=_label("cuda", runner), result=result)
