"""contrib kernels."""
