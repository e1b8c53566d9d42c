"""image kernels."""
