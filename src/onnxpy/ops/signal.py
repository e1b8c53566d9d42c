"""signal kernels."""
