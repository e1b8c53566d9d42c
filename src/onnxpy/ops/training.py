"""training kernels."""
