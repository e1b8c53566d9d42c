"""ml kernels."""
