"""Quantize: a bundle's fp32 graphs become int8 / int4 / fp16 variants beside them, with an accuracy report.

targets    the dtypes (`int8` -> `<graph>_int8.onnx`, `int4` -> `_q4`, `fp16` -> `_fp16`) and their defaults
matmul     MatMul weights -> com.microsoft MatMulNBits (onnxruntime's own MatMulNBitsQuantizer)
embedding  Gather tables -> com.microsoft GatherBlockQuantized (8 or 4 bits, uint8 storage)
fp16       fp32 -> fp16 weights and compute, float32 inputs and outputs kept
graph_io   loading and saving graphs with external data, op census, WebGPU op checks
report     the accuracy report against the fp32 graphs (per graph and end to end)
records    manifest.json / config.json updates
driver     `janusweb quantize`: checks, one graph at a time into a temp folder, then rename into place
"""
