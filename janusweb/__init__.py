"""janusweb: Janus-Pro from a PyTorch checkpoint to validated ONNX graphs and a static WebGPU page."""

__version__ = "0.1.0"
