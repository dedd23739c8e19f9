"""The trained model's own evaluation (PyTorch fp32): janusweb/quality.py through the reference loop on
transformers' modules (janusweb.graphs.TorchGraphs over the export's graph wrappers)."""

from janusweb.export.bundle import runtime_config
from janusweb.export.specs import graph_specs
from janusweb.generate import ModelDims
from janusweb.graphs import TorchGraphs
from janusweb.log import log
from janusweb.prompts import SpecialIds
from janusweb.quality import IMAGES_PER_PROMPT, evaluate, runner_backend
from janusweb.runner import Runner


def torch_runner(model, tok) -> Runner:
    """The model through the export's graph wrappers, with eager attention as exported (the vision tower then
    takes zero images, as a text-only prompt gives it)."""
    model.set_attn_implementation("eager")
    ids = SpecialIds.from_tokenizer(tok)
    dims = ModelDims.from_bundle_config(runtime_config(model.config, ids))
    return Runner(TorchGraphs(model.eval(), graph_specs(model)), tok, dims,
                  model.config.text_config.max_position_embeddings)


def progress(what: str, k: int, n: int) -> None:
    if k == n or k % max(1, n // 4) == 0:
        log.info("evaluate (PyTorch fp32) %s: %d/%d", what, k, n)


def scores(model, tok, task: dict) -> dict:
    """The quality figures (no per-item rows) of a trained model, as the model card and train_log.json hold them."""
    result = evaluate(runner_backend("pytorch-fp32", torch_runner(model, tok)), task, on_progress=progress)
    return {"backend": result["backend"], "images_per_prompt": IMAGES_PER_PROMPT,
            "generation": result["generation"], "answers": result["answers"]}
