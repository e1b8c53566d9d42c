"""Image operators: Resize/Upsample, GridSample, AffineGrid, RoiAlign, NonMaxSuppression,
CenterCropPad and ImageDecoder.

Resize is separable: each resized axis is interpolated in turn with precomputed source indices
and weights (one ``np.take`` per filter tap), which covers every mode, coordinate transform and
the antialiasing filters of https://onnx.ai/onnx/operators/onnx__Resize.html.
"""
from __future__ import annotations

import io
import itertools
import math

import numpy as np

from onnxpy.ops._helpers import compute_dtype, first, normalize_axis, present
from onnxpy.registry import kernel

_SUPPORT = {"linear": 1, "cubic": 2}  # filter half-width in input pixels


def _cast_back(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast an interpolated float array to ``dtype``, rounding and saturating for integers."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    return y.astype(dtype, copy=False)


def _source_coords(mode: str, n_out: int, scale: float, n_in: int, out_len: float,
                   roi: tuple[float, float] | None) -> np.ndarray:
    """Input coordinate of each output index along one axis (coordinate_transformation_mode)."""
    y = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / out_len)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        # the reference and the node tests use the unrounded length scale * n_in
        return y * (n_in - 1) / (out_len - 1) if out_len != 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_len == 1:
            return np.full(n_out, (end - start) * (n_in - 1) / 2 + start * (n_in - 1))
        return y * (end - start) * (n_in - 1) / (out_len - 1) + start * (n_in - 1)
    raise ValueError(f"unsupported coordinate_transformation_mode {mode!r}")


def _nearest_index(x: np.ndarray, nearest_mode: str, scale: float) -> np.ndarray:
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    if nearest_mode == "simple":  # opsets < 11 (Upsample, Resize-10), as onnxruntime does
        return np.ceil(x) if scale < 1 else np.floor(x)
    raise ValueError(f"unsupported nearest_mode {nearest_mode!r}")


def _filter(mode: str, d: np.ndarray, cubic_coeff_a: float) -> np.ndarray:
    d = np.abs(d)
    if mode == "linear":
        return np.maximum(1 - d, 0)
    a = cubic_coeff_a
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _axis_taps(x_src: np.ndarray, n_in: int, scale: float, *, mode: str, nearest_mode: str,
               cubic_coeff_a: float, exclude_outside: int, antialias: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, both (n_out, taps), for interpolating one axis."""
    if mode == "nearest":
        idx = _nearest_index(x_src, nearest_mode, scale)
        return np.clip(idx, 0, n_in - 1).astype(np.intp)[:, None], np.ones((len(x_src), 1))
    if mode not in _SUPPORT:
        raise ValueError(f"unsupported Resize mode {mode!r}")
    support = _SUPPORT[mode]
    stretch = min(scale, 1.0) if antialias else 1.0
    first = math.floor(-support / stretch) + 1
    offsets = np.arange(first, 1 - first + 1)
    base = np.floor(x_src)
    idx = base[:, None].astype(np.int64) + offsets
    weights = _filter(mode, stretch * (offsets - (x_src - base)[:, None]), cubic_coeff_a)
    if antialias:
        weights = weights / weights.sum(axis=1, keepdims=True)
    if exclude_outside:
        weights = np.where((idx < 0) | (idx >= n_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1).astype(np.intp), weights


def _interpolate_axis(x: np.ndarray, axis: int, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum over filter taps of ``x`` gathered along ``axis``."""
    shape = [1] * x.ndim
    shape[axis] = len(idx)
    if idx.shape[1] == 1:
        return np.take(x, idx[:, 0], axis=axis)
    w = weights.astype(x.dtype)
    out = np.take(x, idx[:, 0], axis=axis)
    out *= w[:, 0].reshape(shape)
    for k in range(1, idx.shape[1]):
        tap = np.take(x, idx[:, k], axis=axis)
        tap *= w[:, k].reshape(shape)
        out += tap
    return out


def _resize(x: np.ndarray, roi, scales, sizes, *, mode: str, coordinate_transformation_mode: str,
            nearest_mode: str, cubic_coeff_a: float = -0.75, exclude_outside: int = 0,
            extrapolation_value: float = 0.0, antialias: int = 0, axes=None,
            keep_aspect_ratio_policy: str = "stretch") -> np.ndarray:
    """Resize (every opset) and Upsample: separable interpolation over the resized axes."""
    rank = x.ndim
    axes = list(range(rank)) if axes is None else [normalize_axis(int(a), rank) for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Resize axes {axes} contain duplicates")
    n_in = [x.shape[a] for a in axes]
    if present(sizes) and present(scales):
        raise ValueError("Resize takes only one of 'scales' and 'sizes'")
    if present(sizes):
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
        if len(sizes) != len(axes):
            raise ValueError(f"Resize sizes has {len(sizes)} values for {len(axes)} axes")
        scale = [s / i for s, i in zip(sizes, n_in)]
        if keep_aspect_ratio_policy != "stretch":
            if keep_aspect_ratio_policy not in ("not_larger", "not_smaller"):
                raise ValueError(f"unsupported keep_aspect_ratio_policy {keep_aspect_ratio_policy!r}")
            common = min(scale) if keep_aspect_ratio_policy == "not_larger" else max(scale)
            scale = [common] * len(axes)
            sizes = [int(common * i + 0.5) for i in n_in]
        out_len = [float(s) for s in sizes]
    elif present(scales):
        scale = [float(s) for s in np.asarray(scales, dtype=np.float32).reshape(-1)]
        if len(scale) != len(axes):
            raise ValueError(f"Resize scales has {len(scale)} values for {len(axes)} axes")
        if min(scale) <= 0:
            raise ValueError(f"Resize scales must be positive, got {scale}")
        out_len = [s * i for s, i in zip(scale, n_in)]
        sizes = [int(math.floor(n)) for n in out_len]
    else:
        raise ValueError("Resize needs one of 'scales' and 'sizes'")
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    if crop:
        if not present(roi):
            raise ValueError("coordinate_transformation_mode 'tf_crop_and_resize' needs a roi input")
        roi = [float(r) for r in np.asarray(roi).reshape(-1)]
        if len(roi) == 2 * rank and len(axes) != rank:
            roi = [roi[a] for a in axes] + [roi[rank + a] for a in axes]
        if len(roi) != 2 * len(axes):
            raise ValueError(f"Resize roi has {len(roi)} values, expected {2 * len(axes)}")
    y = x if mode == "nearest" else x.astype(compute_dtype(x.dtype, np.float32), copy=False)
    # shrinking axes first keeps the intermediate results small; among equals, the innermost
    # axis (the slowest to gather along) goes first
    for i in sorted(range(len(axes)), key=lambda i: (sizes[i] / max(n_in[i], 1), -axes[i])):
        axis = axes[i]
        if not crop and scale[i] == 1 and sizes[i] == n_in[i]:
            continue
        box = (roi[i], roi[len(axes) + i]) if crop else None
        x_src = _source_coords(coordinate_transformation_mode, sizes[i], scale[i], n_in[i], out_len[i], box)
        idx, weights = _axis_taps(x_src, n_in[i], scale[i], mode=mode, nearest_mode=nearest_mode,
                                  cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                                  antialias=antialias)
        y = _interpolate_axis(y, axis, idx, weights)
        if crop:
            outside = (x_src < 0) | (x_src > n_in[i] - 1)
            if outside.any():
                shape = [1] * rank
                shape[axis] = sizes[i]
                y = np.where(outside.reshape(shape), y.dtype.type(extrapolation_value), y)
    if y is x:  # nothing to resize: never hand the caller's array back as an output
        return x.copy()
    return y if y.dtype == x.dtype else _cast_back(y, x.dtype)


def _upsample(x: np.ndarray, scales, mode: str) -> np.ndarray:
    """Upsample and Resize-10: asymmetric coordinates, onnxruntime's pre-opset-11 rounding."""
    mode = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise ValueError(f"unsupported Upsample/Resize mode {mode!r}")
    return _resize(x, None, np.asarray(scales, dtype=np.float32), None, mode=mode,
                   coordinate_transformation_mode="asymmetric", nearest_mode="simple")


@kernel("Resize", since=10)
def resize_10(x, scales, *, mode="nearest"):
    """Resize-10: ``scales`` per axis, nearest or linear with asymmetric coordinates."""
    return _upsample(x, scales, mode)


@kernel("Resize", since=11)
def resize_11(x, roi=None, scales=None, sizes=None, *, coordinate_transformation_mode="half_pixel",
              cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, mode="nearest",
              nearest_mode="round_prefer_floor"):
    """Resize-11 and -13."""
    return _resize(x, roi, scales, sizes, mode=mode, nearest_mode=nearest_mode,
                   coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value)


@kernel("Resize", since=18)
def resize_18(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
              coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
              extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
              nearest_mode="round_prefer_floor"):
    """Resize-18 and -19: adds ``axes``, ``antialias``, ``keep_aspect_ratio_policy`` (and, in 19,
    the half_pixel_symmetric transform)."""
    return _resize(x, roi, scales, sizes, mode=mode, nearest_mode=nearest_mode,
                   coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value, antialias=antialias, axes=axes,
                   keep_aspect_ratio_policy=keep_aspect_ratio_policy)


@kernel("Upsample", since=1)
def upsample_1(x, *, height_scale, width_scale, mode="nearest"):
    """Upsample-1: NCHW input, scales for the last two axes."""
    if x.ndim != 4:
        raise ValueError(f"Upsample-1 expects a 4-D NCHW input, got rank {x.ndim}")
    return _upsample(x, [1.0, 1.0, height_scale, width_scale], mode)


@kernel("Upsample", since=7)
def upsample_7(x, *, scales, mode="nearest"):
    """Upsample-7: scales as an attribute."""
    return _upsample(x, scales, mode)


@kernel("Upsample", since=9)
def upsample_9(x, scales, *, mode="nearest"):
    """Upsample-9 and -10: scales as an input."""
    return _upsample(x, scales, mode)


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect coordinates into ``[low, high]`` by the nearest border (PyTorch's grid sampler)."""
    span = high - low
    if span <= 0:
        return np.full_like(x, low)
    below = x < low
    dist = np.where(below, low - x, x - high)
    flips = np.floor(dist / span)
    rest = dist - flips * span
    even = flips % 2 == 0
    inside = np.where(below, np.where(even, low + rest, high - rest), np.where(even, high - rest, low + rest))
    return np.where((x < low) | (x > high), inside, x)


def _grid_sample(x: np.ndarray, grid: np.ndarray, mode: str, padding_mode: str, align_corners: int) -> np.ndarray:
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"unsupported GridSample padding_mode {padding_mode!r}")
    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"unsupported GridSample mode {mode!r}")
    n, c, *dims = x.shape
    k = len(dims)
    if grid.shape[0] != n or grid.shape[-1] != k:
        raise ValueError(f"GridSample grid of shape {grid.shape} does not fit input of shape {x.shape}")
    ctype = compute_dtype(x.dtype, np.float32)
    out_spatial = grid.shape[1:-1]
    g = grid.reshape(n, -1, k).astype(ctype)
    axis_taps = []
    for i, d in enumerate(dims):
        u = g[..., k - 1 - i]  # the grid lists coordinates innermost axis first
        pos = (u + 1) / 2 * (d - 1) if align_corners else ((u + 1) * d - 1) / 2
        low, high = (0.0, d - 1.0) if align_corners else (-0.5, d - 0.5)
        if mode == "nearest":
            pos = np.rint(pos)
        # "border" clamps each tap below, as onnxruntime and PyTorch do (the reference clamps the
        # sampling point instead, which differs for cubic taps near the edge)
        if padding_mode == "reflection":
            pos = _reflect(pos, low, high)
        if mode == "nearest":
            taps = [(pos, np.ones_like(pos))]
        else:
            base = np.floor(pos)
            t = pos - base
            offsets = (0, 1) if mode == "linear" else (-1, 0, 1, 2)
            w = _filter(mode, np.stack([o - t for o in offsets]), -0.75).astype(ctype)
            taps = [(base + o, w[j]) for j, o in enumerate(offsets)]
        resolved = []
        for index, weight in taps:
            if padding_mode == "zeros":
                weight = np.where((index < 0) | (index > d - 1), 0, weight).astype(ctype)
            elif padding_mode == "reflection" and mode != "nearest":
                index = _reflect(index, low, high)
            resolved.append((np.clip(index, 0, d - 1).astype(np.intp), weight))
        axis_taps.append(resolved)
    strides = np.cumprod([1, *dims[::-1]])[::-1][1:]
    flat = x.reshape(n, c, -1).astype(ctype, copy=False)
    out = np.zeros((n, c, g.shape[1]), dtype=ctype)
    for combo in itertools.product(*axis_taps):
        index = sum(ix * s for (ix, _), s in zip(combo, strides))
        weight = np.prod([w for _, w in combo], axis=0)
        out += np.take_along_axis(flat, index[:, None, :], axis=2) * weight[:, None, :]
    return _cast_back(out.reshape(n, c, *out_spatial), x.dtype)


@kernel("GridSample", since=16)
def grid_sample_16(x, grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    """GridSample-16: 4-D input, modes bilinear / nearest / bicubic."""
    if x.ndim != 4:
        raise ValueError(f"GridSample-16 expects a 4-D input, got rank {x.ndim}")
    modes = {"bilinear": "linear", "bicubic": "cubic", "nearest": "nearest"}
    if mode not in modes:
        raise ValueError(f"unsupported GridSample-16 mode {mode!r}")
    return _grid_sample(x, grid, modes[mode], padding_mode, align_corners)


@kernel("GridSample", since=20)
def grid_sample_20(x, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    """GridSample-20 and -22: N-D input, modes linear / nearest / cubic."""
    return _grid_sample(x, grid, mode, padding_mode, align_corners)


@kernel("AffineGrid", since=20)
def affine_grid(theta, size, *, align_corners=0):
    """Sampling grid (N, *spatial, k) of the affine maps ``theta`` (N, k, k+1)."""
    size = [int(s) for s in np.asarray(size).reshape(-1)]
    spatial = size[2:]
    k = len(spatial)
    if k not in (2, 3) or theta.shape[1:] != (k, k + 1):
        raise ValueError(f"AffineGrid theta of shape {theta.shape} does not fit size {size}")
    axes = []
    for d in spatial:
        if align_corners:
            axes.append(np.linspace(-1, 1, d) if d > 1 else np.zeros(d))
        else:
            axes.append((np.arange(d) * 2 + 1) / d - 1)
    mesh = np.meshgrid(*axes, indexing="ij")
    base = np.stack([*mesh[::-1], np.ones(spatial)], axis=-1).reshape(-1, k + 1)  # (x, y[, z], 1)
    grid = np.einsum("pj,nij->npi", base.astype(theta.dtype), theta)
    return grid.reshape(theta.shape[0], *spatial, k).astype(theta.dtype, copy=False)


def _roi_axis(start: np.ndarray, bin_size: np.ndarray, pooled: int, grid: int, length: int):
    """Bilinear sample rows along one axis for ROIs sharing a sampling grid: indices and weights
    (R, pooled, grid, 2) and a validity mask (R, pooled, grid)."""
    steps = np.arange(pooled)[:, None] + (np.arange(grid)[None, :] + 0.5) / grid
    pos = start[:, None, None] + steps[None] * bin_size[:, None, None]
    valid = (pos >= -1.0) & (pos <= length)
    pos = np.maximum(pos, 0)
    low = np.floor(pos).astype(np.intp)
    at_end = low >= length - 1
    low = np.where(at_end, length - 1, low)
    high = np.where(at_end, length - 1, low + 1)
    frac = np.where(at_end, 0.0, pos - low)
    weights = np.stack([1 - frac, frac], axis=-1) * valid[..., None]
    return np.stack([low, high], axis=-1), weights


def _roi_align(x, rois, batch_indices, *, mode, output_height, output_width, sampling_ratio,
               spatial_scale, half_pixel):
    if mode not in ("avg", "max"):
        raise ValueError(f"unsupported RoiAlign mode {mode!r}")
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4:
        raise ValueError(f"RoiAlign expects X (N,C,H,W) and rois (R,4), got {x.shape} and {rois.shape}")
    _, c, height, width = x.shape
    ph, pw = output_height, output_width
    boxes = rois.astype(np.float64) * spatial_scale - (0.5 if half_pixel else 0.0)
    start_w, start_h, end_w, end_h = boxes.T
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not half_pixel:
        roi_w, roi_h = np.maximum(roi_w, 1.0), np.maximum(roi_h, 1.0)
    if sampling_ratio > 0:
        grid_h = np.full(len(rois), sampling_ratio)
        grid_w = grid_h
    else:
        grid_h = np.ceil(roi_h / ph).astype(np.int64)
        grid_w = np.ceil(roi_w / pw).astype(np.int64)
    batch = np.asarray(batch_indices).astype(np.intp).reshape(-1)
    ctype = compute_dtype(x.dtype, np.float32)
    out = np.zeros((len(rois), c, ph, pw), dtype=ctype)
    for gh, gw in set(zip(grid_h.tolist(), grid_w.tolist())):
        if gh <= 0 or gw <= 0:
            continue
        members = np.flatnonzero((grid_h == gh) & (grid_w == gw))
        chunk = max(1, (1 << 22) // max(1, c * ph * pw * gh * gw * 4))
        for part in np.array_split(members, range(chunk, len(members), chunk)):
            iy, wy = _roi_axis(start_h[part], roi_h[part] / ph, ph, gh, height)
            ix, wx = _roi_axis(start_w[part], roi_w[part] / pw, pw, gw, width)
            r = len(part)
            rows = iy.reshape(r, -1)[:, :, None]
            cols = ix.reshape(r, -1)[:, None, :]
            # (r, ph*gh*2, pw*gw*2, c): advanced indices come first, the channel slice last
            pixels = x[batch[part][:, None, None], :, rows, cols].astype(ctype, copy=False)
            pixels = pixels.reshape(r, ph, gh * 2, pw, gw * 2, c)
            wy = wy.reshape(r, ph, gh * 2).astype(ctype)
            wx = wx.reshape(r, pw, gw * 2).astype(ctype)
            if mode == "avg":
                out[part] = np.einsum("rpaqbc,rpa,rqb->rcpq", pixels, wy, wx, optimize=True) / (gh * gw)
            else:
                # onnxruntime and the reference take the max of the weighted corner values
                weighted = pixels * wy[:, :, :, None, None, None] * wx[:, None, None, :, :, None]
                out[part] = weighted.max(axis=(2, 4)).transpose(0, 3, 1, 2)
    return out.astype(x.dtype, copy=False)


@kernel("RoiAlign", since=10)
def roi_align_10(x, rois, batch_indices, *, mode="avg", output_height=1, output_width=1,
                 sampling_ratio=0, spatial_scale=1.0):
    """RoiAlign-10: pixel corners at integer coordinates (no half-pixel shift)."""
    return _roi_align(x, rois, batch_indices, mode=mode, output_height=output_height,
                      output_width=output_width, sampling_ratio=sampling_ratio,
                      spatial_scale=spatial_scale, half_pixel=False)


@kernel("RoiAlign", since=16)
def roi_align_16(x, rois, batch_indices, *, coordinate_transformation_mode="half_pixel", mode="avg",
                 output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """RoiAlign-16 and -22: ``coordinate_transformation_mode`` half_pixel or output_half_pixel."""
    if coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
        raise ValueError(f"unsupported coordinate_transformation_mode {coordinate_transformation_mode!r}")
    return _roi_align(x, rois, batch_indices, mode=mode, output_height=output_height,
                      output_width=output_width, sampling_ratio=sampling_ratio,
                      spatial_scale=spatial_scale, half_pixel=coordinate_transformation_mode == "half_pixel")


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """Boxes as (y_min, x_min, y_max, x_max), whatever order the corners came in."""
    if center_point_box:
        xc, yc, w, h = np.moveaxis(boxes.astype(np.float64), -1, 0)
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
    y1, x1, y2, x2 = np.moveaxis(boxes.astype(np.float64), -1, 0)
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=-1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with many; 0 where boxes do not overlap."""
    inter_h = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    inter_w = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((inter_h > 0) & (inter_w > 0), inter_h * inter_w, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


@kernel("NonMaxSuppression", since=10)
def non_max_suppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                        score_threshold=None, *, center_point_box=0):
    """Greedy per-(batch, class) NMS; rows of (batch_index, class_index, box_index)."""
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
            or scores.shape[2] != boxes.shape[1]:
        raise ValueError(f"NonMaxSuppression boxes {boxes.shape} and scores {scores.shape} do not match")
    limit = int(first(max_output_boxes_per_class)) if present(max_output_boxes_per_class) else 0
    iou_limit = float(first(iou_threshold)) if present(iou_threshold) else 0.0
    corners = _corners(boxes, center_point_box)
    selected = []
    pairs = itertools.product(range(scores.shape[0]), range(scores.shape[1])) if limit > 0 else ()
    for b, cls in pairs:
        s = scores[b, cls]
        order = np.argsort(-s.astype(np.float64), kind="stable")
        if present(score_threshold):
            order = order[s[order] > np.asarray(score_threshold).reshape(-1)[0]]
        kept = []
        while order.size and len(kept) < limit:
            best, order = order[0], order[1:]
            kept.append(best)
            order = order[_iou(corners[b, best], corners[b, order]) <= iou_limit]
        selected += [(b, cls, i) for i in kept]
    return np.array(selected, dtype=np.int64).reshape(-1, 3)


@kernel("CenterCropPad", since=18)
def center_crop_pad(input_data, shape, *, axes=None):
    """Center-crop or zero-pad each listed axis to ``shape``."""
    rank = input_data.ndim
    axes = list(range(rank)) if axes is None else [normalize_axis(a, rank) for a in axes]
    target = [int(s) for s in np.asarray(shape).reshape(-1)]
    if len(target) != len(axes):
        raise ValueError(f"CenterCropPad shape has {len(target)} values for {len(axes)} axes")
    out_shape = list(input_data.shape)
    src = [slice(None)] * rank
    dst = [slice(None)] * rank
    for axis, size in zip(axes, target):
        dim = input_data.shape[axis]
        out_shape[axis] = size
        if size < dim:
            start = (dim - size) // 2
            src[axis] = slice(start, start + size)
        elif size > dim:
            start = (size - dim) // 2
            dst[axis] = slice(start, start + dim)
    out = np.zeros(out_shape, dtype=input_data.dtype)
    out[tuple(dst)] = input_data[tuple(src)]
    return out


@kernel("ImageDecoder", since=20)
def image_decoder(encoded_stream, *, pixel_format="RGB"):
    """Decode an encoded image (bytes as a uint8 tensor) into (H, W, C) uint8 with Pillow."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("ImageDecoder needs Pillow: pip install pillow") from exc
    modes = {"RGB": "RGB", "BGR": "RGB", "Grayscale": "L"}
    if pixel_format not in modes:
        raise ValueError(f"unsupported ImageDecoder pixel_format {pixel_format!r}")
    try:
        image = Image.open(io.BytesIO(np.asarray(encoded_stream, dtype=np.uint8).tobytes()))
        pixels = np.asarray(image.convert(modes[pixel_format]), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ValueError(f"ImageDecoder could not decode the image: {exc}") from exc
    if pixel_format == "Grayscale":
        return np.ascontiguousarray(pixels[:, :, None])
    return np.ascontiguousarray(pixels[:, :, ::-1]) if pixel_format == "BGR" else pixels
