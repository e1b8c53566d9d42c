"""sequence kernels."""
