"""The language model of a streamed export: traced on the meta device, its weights filled in as the graph is
written, and checked against PyTorch one block of decoder layers at a time.

torch.onnx traces `wrappers.LanguageModel` over meta weights (the graph's structure, no weight memory). Each
initializer then becomes a lazy tensor that reads its bf16 source and converts it to fp32 when the file is
written, one tensor at a time; the weight transposes that the exporter's optimizer would fold (holding every
folded weight in memory) are folded here the same way, lazily. The check cuts the written graph at the residual
stream between decoder layers (onnx.utils.Extractor) and runs each block in onnxruntime against the same
transformers layers in fp32, materialised for that block only.
"""

import re
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import torch
from onnx.utils import Extractor
from transformers import LlamaModel

from janusweb.export import wrappers
from janusweb.export.onnx_export import (EXTERNAL_DATA_THRESHOLD, OPSET, _dynamic_shapes, compact_node_names,
                                         weight_bytes)
from janusweb.export.validate import Check, Report
from janusweb.export.weights import GraphWeights, full_names, materialized
from janusweb.log import log
from janusweb.metrics import cosine

LAYER = re.compile(r"/lm\.layers\.(\d+)[:.]")


def _meta(t: torch.Tensor) -> torch.Tensor:
    return t.to("meta")


def _lazy(fetch, value: ir.Value) -> ir.LazyTensor:
    return ir.LazyTensor(lambda: ir.tensor(fetch().numpy(), name=value.name), dtype=value.dtype,
                         shape=ir.Shape(list(value.shape)), name=value.name)


def _fill(graph: ir.Graph, sources: dict) -> dict:
    """Lazy fp32 values for the traced initializers; Transpose(weight, [1, 0]) of a weight read by that node
    alone becomes an initializer of its own (what the optimizer folds), also lazy. Returns {folded initializer:
    the traced weight it transposes}."""
    folds = {}
    for name, value in graph.initializers.items():
        value.const_value = _lazy(sources[name], value)
    for node in list(graph):
        w = node.inputs[0] if node.op_type == "Transpose" and node.inputs else None
        if w is None or w.name not in graph.initializers or len(w.uses()) != 1 or len(w.shape) != 2:
            continue
        out, fetch = node.outputs[0], sources[w.name]
        folded = ir.Value(name=out.name, shape=ir.Shape([w.shape[1], w.shape[0]]), type=w.type)
        out.name = f"{out.name}.transposed"
        folded.const_value = _lazy(lambda fetch=fetch: fetch().t().contiguous(), folded)
        out.replace_all_uses_with(folded)
        graph.remove(node, safe=True)
        graph.register_initializer(folded)
        graph.initializers.pop(w.name)
        folds[folded.name] = w.name
    return folds


def export_language_model(spec, model, store, out_dir: Path, buffers: dict, quant=None) -> tuple:
    """Write out_dir/language_model<suffix>.onnx + .onnx_data with weights streamed from `store`. `buffers`: the
    real values (name -> tensor) of the model's non-persistent buffers, which are on the meta device during the
    trace. quant: None (fp32) or a quantizer of quantize.stream (StreamQuantizer: its MatMuls become MatMulNBits,
    each weight quantized as it is written). The fp32 graph keeps its weights in the .onnx file where
    export_graph would (up to EXTERNAL_DATA_THRESHOLD), the quantized one always in <stem>.onnx_data. Returns (files,
    MatMulStats or None, op counts, {quantized weight initializer: the model's parameter name})."""
    program, stats, packed = trace_language_model(spec, model, store, buffers, quant)
    stem = spec.name + (quant.suffix if quant else "")
    path, data = out_dir / f"{stem}.onnx", f"{stem}.onnx_data"
    ops = {}
    for node in program.model.graph:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    if quant is None and weight_bytes(spec.wrapper(model)) <= EXTERNAL_DATA_THRESHOLD:  # as export_graph writes it
        ir.save(program.model, path)
        return [path], stats, dict(sorted(ops.items())), packed
    ir.save(program.model, path, external_data=data)
    return [path, out_dir / data], stats, dict(sorted(ops.items())), packed


def trace_language_model(spec, model, store, buffers: dict, quant=None) -> tuple:
    """The language model traced over meta weights, its initializers lazy (read from `store`, quantized by
    `quant`, only when the program is saved): (the ONNX program, MatMulStats or None, {quantized weight
    initializer: the model's parameter name}). Tracing again gives the same names: a written bundle's packed
    weights are found this way (export.end_to_end)."""
    module = spec.wrapper(model).eval()
    args = tuple(_meta(a) for a in spec.make_inputs(spec.export_dims, torch.Generator().manual_seed(0)))
    names = full_names(model)
    sources = {}
    for local, p in module.named_parameters(remove_duplicate=False):
        sources[local] = lambda full=names[id(p)]: store.get(full).to(torch.float32)
    prefix = {id(m): n for n, m in model.named_modules()}
    for local, _ in module.named_buffers():
        owner, _, leaf = local.rpartition(".")
        full = f"{prefix[id(module.get_submodule(owner))]}.{leaf}"
        sources[local] = lambda full=full: buffers[full].to(torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, args, None, input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs], dynamic_shapes=_dynamic_shapes(spec, module),
            opset_version=OPSET, dynamo=True, optimize=False, verbose=False)
    folds = _fill(program.model.graph, sources)
    program.optimize()
    program.model.producer_name = "janusweb"
    compact_node_names(program.model)
    stats, renamed = quant.apply(program.model) if quant else (None, {})
    local = {id(p): n for n, p in module.named_parameters(remove_duplicate=False)}
    full = {n: names[i] for i, n in local.items()}
    packed = {q: full[folds.get(w, w)] for w, q in renamed.items()}
    return program, stats, packed


def layer_boundaries(graph: onnx.GraphProto, layers: int) -> list:
    """The residual stream between decoder layers: boundaries[i] enters layer i (inputs_embeds for i = 0),
    boundaries[layers] is the graph's hidden_states. Layer i reads other values made in layer i - 1's scope
    (the rotary tables and shapes that the optimizer computes once and shares); the stream is the last one
    computed there, the layer's final residual Add."""
    layer_of, made_by = {}, {}
    for index, node in enumerate(graph.node):
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        m = LAYER.search(scope)
        layer_of[index] = int(m[1]) if m else None
        made_by.update(dict.fromkeys(node.output, index))
    bounds = ["inputs_embeds"]
    for i in range(1, layers):
        entering = {x for index, node in enumerate(graph.node) if layer_of[index] == i for x in node.input
                    if x in made_by and layer_of[made_by[x]] == i - 1}
        stream = max(entering, key=made_by.get, default=None)
        if stream is None or graph.node[made_by[stream]].op_type != "Add":
            raise RuntimeError(f"language_model: cannot find the residual stream entering layer {i}")
        bounds.append(stream)
    return bounds + ["hidden_states"]


def _needed_inputs(graph: onnx.GraphProto, outputs: list, cut: set) -> list:
    """The graph inputs that `outputs` depend on when the values in `cut` are given."""
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input}
    seen, stack, needed = set(), list(outputs), set()
    while stack:
        v = stack.pop()
        if v in seen or v in cut:
            continue
        seen.add(v)
        if v in inputs:
            needed.add(v)
        elif v in producer:
            stack.extend(x for x in producer[v].input if x)
    return sorted(needed | cut)


def _block_reference(model, first: int, last: int) -> wrappers.LanguageModel:
    """transformers' own LlamaModel over decoder layers first..last (the final norm only after the last layer)."""
    lm = model.model.language_model
    config = lm.config.__class__(**{**lm.config.to_dict(), "num_hidden_layers": last - first + 1})
    config._attn_implementation = lm.config._attn_implementation  # the layers' attention reads the mask it makes
    with torch.device("meta"):
        sub = LlamaModel(config)
    sub.layers = torch.nn.ModuleList(lm.layers[first:last + 1])
    sub.rotary_emb = lm.rotary_emb
    sub.norm = lm.norm if last == len(lm.layers) - 1 else torch.nn.Identity()
    shim = types.SimpleNamespace(model=types.SimpleNamespace(language_model=sub),
                                 config=types.SimpleNamespace(text_config=config))
    return wrappers.LanguageModel(shim).eval()


def check_language_model(spec, model, store, onnx_path: Path, report: Report, block: int, quant=None,
                         packed: dict | None = None) -> dict:
    """Each block of `block` decoder layers of the written graph against transformers' layers, at fp32, on the
    spec's check dims (other batch, sequence and past lengths than the export's).

    A quantized graph (quant: its StreamQuantizer; packed: {its MatMulNBits weight initializer: parameter name})
    is checked, at the same tolerance, against the layers with the weights it computes with (its own packed
    weights and scales, read back from its file and dequantized: weights.GraphWeights), which checks its structure
    and its quantized weights; its accuracy is then measured against the layers with the source
    weights. Returns that accuracy: {"layers a-b": {"max_abs_diff", "reference_abs_max", "cosine"}} (worst over
    the check dims, hidden states), empty for fp32."""
    layers = len(model.model.language_model.layers)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    bounds = layer_boundaries(proto.graph, layers)
    extractor = Extractor(proto)
    accuracy, graph = {}, spec.name + (quant.suffix if quant else "")  # the graph's name in the report
    for first in range(0, layers, block):
        last = min(first + block, layers) - 1
        outputs = [bounds[last + 1]] + [f"present.{k}.{kv}" for k in range(first, last + 1) for kv in ("key", "value")]
        inputs = _needed_inputs(proto.graph, outputs, {bounds[first]})
        log.info("  decoder layers %d-%d of %d", first, last, layers)
        with tempfile.NamedTemporaryFile(suffix=".onnx", dir=onnx_path.parent) as part:
            onnx.save(extractor.extract_model(inputs, outputs), part.name)
            session = _session(Path(part.name))
            checked = GraphWeights(store, proto.graph, onnx_path.parent, packed, quant) if quant else store
            _check_block(spec, model, checked, session, first, last, inputs, outputs, bounds, report, graph)
            if quant:
                measured = Report()
                _check_block(spec, model, store, session, first, last, inputs, outputs, bounds, measured, graph)
                hidden = [c for c in measured.checks if c.tensor == "hidden_states"]
                worst = max(hidden, key=lambda c: c.max_abs_diff)
                accuracy[f"layers {first}-{last}"] = {"max_abs_diff": worst.max_abs_diff,
                                                      "limit_at_fp32": worst.limit,
                                                      "cosine": min(c.cosine for c in hidden)}
                log.info("  %s layers %d-%d vs the source weights: max |diff| %.3g, cosine %.6f", quant.name,
                         first, last, worst.max_abs_diff, accuracy[f"layers {first}-{last}"]["cosine"])
            del session
    return accuracy


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _check_block(spec, model, store, session, first, last, inputs, outputs, bounds, report, graph) -> None:
    lm = model.model.language_model
    layer_ids = {id(p) for layer in lm.layers[first:last + 1] for p in layer.parameters()} | \
                {id(p) for p in lm.norm.parameters()}
    saved = [layer.self_attn.layer_idx for layer in lm.layers]
    with materialized(model, store, layer_ids):
        for k, layer in enumerate(lm.layers[first:last + 1]):
            layer.self_attn.layer_idx = k  # the block's own cache numbering
        try:
            reference = _block_reference(model, first, last)
            for n, dims in enumerate(spec.check_dims):
                args = spec.make_inputs(dims, torch.Generator().manual_seed(100 + n))
                feeds = {t.name: a for t, a in zip(spec.inputs, args)}
                feeds[bounds[first]] = feeds["inputs_embeds"]
                past = args[3 + 2 * first:3 + 2 * (last + 1)]
                with torch.no_grad():
                    ref = reference(feeds["inputs_embeds"], feeds["attention_mask"], feeds["position_ids"], *past)
                got = session.run(outputs, {name: feeds[name].numpy() for name in inputs})
                case = f"layers {first}-{last}," + ",".join(f"{k}={v}" for k, v in dims.items())
                for name, r, o in zip(outputs, ref, got):
                    r = r.numpy()
                    diff = float(np.abs(r.astype(np.float64) - o).max()) if r.shape == o.shape else float("inf")
                    tensor = "hidden_states" if name == bounds[last + 1] else name
                    check = Check(graph, tensor, case, diff, spec.tolerance * max(1.0, float(np.abs(r).max())),
                                  r.shape == o.shape)
                    check.cosine = cosine(r, o) if r.shape == o.shape else float("nan")
                    report.checks.append(check)
        finally:
            for layer, idx in zip(lm.layers, saved):
                layer.self_attn.layer_idx = idx
