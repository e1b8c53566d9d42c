"""nn kernels."""
