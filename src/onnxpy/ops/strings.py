"""strings kernels."""
