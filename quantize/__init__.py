"""Quantize: a bundle's fp32 graphs become int8 / q4 / fp16 variants beside them, with an accuracy report.

targets    the dtypes quantize writes (janusweb.dtypes entries with a quantizer) and the quantizer interface
nbits      the int8 / q4 quantizer: MatMulNBits + GatherBlockQuantized
matmul     MatMul weights -> com.microsoft MatMulNBits (onnxruntime's own MatMulNBitsQuantizer)
embedding  Gather tables -> com.microsoft GatherBlockQuantized (8 or 4 bits, uint8 storage)
fp16       the fp16 quantizer: fp32 -> fp16 weights and compute, float32 inputs and outputs kept
graph_io   loading and saving graphs with external data, op census, WebGPU op checks
report     the accuracy report against the fp32 graphs (per graph and end to end)
records    config.json updates (transformers.js defaults); the manifest is janusweb.manifest's
driver     `janusweb quantize`: checks, one graph at a time into a temp folder, then rename into place
"""
