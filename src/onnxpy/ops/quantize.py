"""quantize kernels."""
