"""Export: a Janus-Pro checkpoint (either layout, or a preset) becomes a validated ONNX bundle."""
