"""transformer kernels."""
