"""tjs-webgpu and tjs-wasm: transformers.js (MultiModalityCausalLM with its own onnxruntime-web) running the same
bundle in the same Chromium, through web/bench-pages/tjs-bench.js.

Understanding is greedy on the workload's own input ids, pixels and masks, so its tokens join the parity table.
Image generation uses transformers.js's own sampler and unconditional prompt (pad tokens, masked): speed only,
no token parity. Per-step times come from a streamer that sees every new token. Its page always warms up.
"""

from janusweb.bench import browser
from janusweb.bench.backends import BrowserBackend


def page_config(work) -> dict:
    inp, w = work.inputs, work.workload
    u = inp.understanding
    return {"understanding": {
        "input_ids": u["input_ids"].tolist(), "images_seq_mask": u["images_seq_mask"].tolist(),
        "images_emb_mask": {"dims": list(u["images_emb_mask"].shape), "data": u["images_emb_mask"].ravel().tolist()},
        "pixel_values": {"dims": list(inp.pixel_values.shape), "data": inp.pixel_values.ravel().tolist()}},
        "textTokens": w.text_tokens, "promptIds": inp.prompt_ids.tolist(), "imageTokens": inp.steps,
        "counts": [w.images], "repeats": w.repeats}


class _Tjs(BrowserBackend):
    def refuses(self, case: dict) -> str | None:
        if not (case["text_tokens"] and case["images"] and case["chat_image"] == "random" and case["warmup"]):
            return ("the transformers.js page runs both parts (text_tokens and images > 0), with an image in the chat "
                    "and a warm-up")
        return super().refuses(case)

    def run(self, ctx, case: dict, work, runner) -> dict:
        raw = runner.call("tjs-bench.html", "runTransformersJs",
                          {**page_config(work), "backend": self.ep, "dtype": case["dtype"]})
        adapter = raw["adapter"] or ""
        image = [{**r, "first_image_ms": r["total_ms"]} for runs in raw["generation"].values() for r in runs]
        return {"text": raw["understanding"], "image": image, "load_s": raw["load_ms"] / 1000,
                "label": {"device": browser.webgpu_device(self.ep, adapter), "adapter": adapter,
                          "runner": f"transformers.js {raw['transformers']}", "onnxruntime_web": raw["ort"],
                          "browser": runner.version, "user_agent": raw["userAgent"]},
                "extra": {"note": "transformers.js's own sampler and unconditional prompt: no image parity"}}


class TjsWebGpu(_Tjs):
    name, ep = "tjs-webgpu", "webgpu"


class TjsWasm(_Tjs):
    name, ep = "tjs-wasm", "wasm"
