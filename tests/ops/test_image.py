"""Image operators against onnx.reference, onnxruntime (old opsets) and PyTorch."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from onnx import helper

from tests.ops._oracle import check, node_model, run_onnxpy, run_reference

RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 2, 5, 7)).astype(np.float32)
ROI_EMPTY = np.array([], dtype=np.float32)


def _model(op, feeds, opset, out_dtype=np.float32, **attrs):
    """A one-node model whose output "y" is typed (onnxruntime needs output types)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype))
    return node_model(op, feeds, ["y"], opset=opset, output_types={"y": elem}, **attrs)


def _f32(*values):
    return np.array(values, dtype=np.float32)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(1, 1, 2, 3), (1, 1, 0.6, 1.7), (1, 1, 1.5, 0.5)])
def test_resize_10_matches_onnxruntime(mode, scales):
    feeds = {"x": X, "scales": _f32(*scales)}
    check(_model("Resize", feeds, 10, mode=mode), feeds, oracle="onnxruntime")


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_9_and_7_match_onnxruntime(mode):
    scales = (1, 1, 2.5, 1.5)
    feeds = {"x": X, "scales": _f32(*scales)}
    check(_model("Upsample", feeds, 9, mode=mode), feeds, oracle="onnxruntime")
    feeds = {"x": X}
    check(_model("Upsample", feeds, 7, mode=mode, scales=list(scales)), feeds, oracle="onnxruntime")


def test_upsample_1_nearest_repeats_pixels():
    x = X[:, :, :3, :4]
    expected = np.repeat(np.repeat(x, 2, axis=2), 3, axis=3)
    feeds = {"x": x}
    model = node_model("Upsample", feeds, ["y"], opset=1, height_scale=2.0, width_scale=3.0)
    check(model, feeds, expected=[expected])


@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_11_scales(mode, ctm):
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": _f32(1, 1, 1.6, 0.75)}
    check(node_model("Resize", feeds, ["y"], opset=11, mode=mode, coordinate_transformation_mode=ctm), feeds)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_13_nearest_modes_with_sizes(nearest_mode):
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": ROI_EMPTY, "sizes": np.array([1, 2, 8, 4], dtype=np.int64)}
    check(node_model("Resize", feeds, ["y"], opset=13, nearest_mode=nearest_mode), feeds)


def test_resize_11_tf_half_pixel_for_nn_matches_onnxruntime():
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": _f32(1, 1, 1.7, 0.6)}
    model = _model("Resize", feeds, 11, coordinate_transformation_mode="tf_half_pixel_for_nn")
    check(model, feeds, oracle="onnxruntime")


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_13_tf_crop_and_resize(mode):
    feeds = {"x": X, "roi": _f32(0, 0, -0.2, 0.3, 1, 1, 0.8, 1.2), "scales": ROI_EMPTY,
             "sizes": np.array([1, 2, 4, 6], dtype=np.int64)}
    model = node_model("Resize", feeds, ["y"], opset=13, mode=mode, extrapolation_value=-3.0,
                       coordinate_transformation_mode="tf_crop_and_resize")
    check(model, feeds)


def test_resize_13_cubic_exclude_outside_and_coefficient():
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": _f32(1, 1, 2.2, 0.4)}
    model = node_model("Resize", feeds, ["y"], opset=13, mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5)
    check(model, feeds)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_18_antialias_axes(mode):
    x = RNG.standard_normal((2, 9, 11, 3)).astype(np.float32)
    feeds = {"x": x, "roi": ROI_EMPTY, "scales": _f32(0.45, 0.3)}
    check(node_model("Resize", feeds, ["y"], opset=18, mode=mode, antialias=1, axes=[2, 1]), feeds)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_18_keep_aspect_ratio(policy):
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": ROI_EMPTY, "sizes": np.array([9, 9], dtype=np.int64)}
    model = node_model("Resize", feeds, ["y"], opset=18, mode="linear", axes=[2, 3], keep_aspect_ratio_policy=policy)
    check(model, feeds)
    negative = node_model("Resize", feeds, ["y"], opset=18, mode="linear", axes=[-2, -1],
                          keep_aspect_ratio_policy=policy)
    check(negative, feeds, expected=run_onnxpy(model, feeds))


def test_resize_19_half_pixel_symmetric():
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": _f32(1, 1, 1.7, 0.55)}
    model = node_model("Resize", feeds, ["y"], opset=19, mode="linear",
                       coordinate_transformation_mode="half_pixel_symmetric")
    check(model, feeds)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float16, np.float64])
def test_resize_preserves_dtype(dtype):
    x = (RNG.standard_normal((1, 1, 4, 5)) * 40).clip(-128, 127).astype(dtype)
    if dtype == np.uint8:
        x = (x.astype(np.int16) + 100).astype(np.uint8)
    feeds = {"x": x, "roi": ROI_EMPTY, "scales": _f32(1, 1, 1.5, 2.5)}
    model = node_model("Resize", feeds, ["y"], opset=13, mode="linear")
    # integers round to nearest like the reference (onnxruntime truncates 8-bit results); float32
    # arithmetic may round a .5 tie the other way than the reference's float64
    actual, expected = run_onnxpy(model, feeds)[0], run_reference(model, feeds)[0]
    assert actual.dtype == dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=1e-3, atol=1)


def test_resize_needs_exactly_one_of_scales_and_sizes():
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": ROI_EMPTY}
    with pytest.raises(Exception, match="scales"):
        run_onnxpy(node_model("Resize", feeds, ["y"], opset=13), feeds)
    feeds = {"x": X, "roi": ROI_EMPTY, "scales": _f32(1, 1, 2, 2), "sizes": np.array([1, 2, 3, 4], dtype=np.int64)}
    with pytest.raises(Exception, match="only one"):
        run_onnxpy(node_model("Resize", feeds, ["y"], opset=13), feeds)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample_16_matches_torch(mode, padding_mode, align_corners):
    grid = RNG.uniform(-1.4, 1.4, (1, 6, 4, 2)).astype(np.float32)
    feeds = {"x": X, "grid": grid}
    model = _model("GridSample", feeds, 16, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    expected = torch.nn.functional.grid_sample(torch.from_numpy(X), torch.from_numpy(grid), mode=mode,
                                               padding_mode=padding_mode, align_corners=bool(align_corners))
    check(model, feeds, expected=[expected.numpy()], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_grid_sample_20_volumetric_matches_torch(mode, padding_mode):
    x = RNG.standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    grid = RNG.uniform(-1.3, 1.3, (2, 3, 2, 4, 3)).astype(np.float32)
    feeds = {"x": x, "grid": grid}
    expected = torch.nn.functional.grid_sample(torch.from_numpy(x), torch.from_numpy(grid),
                                               mode="bilinear" if mode == "linear" else mode,
                                               padding_mode=padding_mode, align_corners=False)
    model = node_model("GridSample", feeds, ["y"], opset=20, mode=mode, padding_mode=padding_mode)
    check(model, feeds, expected=[expected.numpy()], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("align_corners", [0, 1])
@pytest.mark.parametrize("size", [(2, 3, 4, 5), (2, 3, 4, 5, 6)])
def test_affine_grid_matches_torch(size, align_corners):
    k = len(size) - 2
    theta = RNG.standard_normal((2, k, k + 1)).astype(np.float32)
    feeds = {"theta": theta, "size": np.array(size, dtype=np.int64)}
    expected = torch.nn.functional.affine_grid(torch.from_numpy(theta), list(size), align_corners=bool(align_corners))
    model = node_model("AffineGrid", feeds, ["grid"], opset=20, align_corners=align_corners)
    check(model, feeds, expected=[expected.numpy()], rtol=1e-5, atol=1e-5)


ROIS = np.array([[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9], [1.5, 2.2, 8.7, 6.1], [3, 3, 3.5, 3.2]], dtype=np.float32)
ROI_X = RNG.standard_normal((2, 3, 10, 10)).astype(np.float32)
ROI_BATCH = np.array([0, 1, 0, 1, 1], dtype=np.int64)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_10_matches_onnxruntime(mode, sampling_ratio):
    feeds = {"x": ROI_X, "rois": ROIS, "batch_indices": ROI_BATCH}
    model = _model("RoiAlign", feeds, 10, mode=mode, output_height=3, output_width=4,
                       sampling_ratio=sampling_ratio, spatial_scale=0.9)
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ctm", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_16(mode, ctm):
    feeds = {"x": ROI_X, "rois": ROIS, "batch_indices": ROI_BATCH}
    model = _model("RoiAlign", feeds, 16, mode=mode, output_height=2, output_width=3,
                       coordinate_transformation_mode=ctm)
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)
    check(model, feeds, rtol=1e-4, atol=1e-5)


def _random_boxes(n_batch, n_boxes):
    corners = RNG.uniform(0, 10, (n_batch, n_boxes, 2))
    sizes = RNG.uniform(0.5, 4, (n_batch, n_boxes, 2))
    return np.concatenate([corners, corners + sizes], axis=-1).astype(np.float32)


@pytest.mark.parametrize("opset", [10, 11])
@pytest.mark.parametrize("center_point_box", [0, 1])
def test_non_max_suppression(opset, center_point_box):
    boxes = _random_boxes(2, 40)
    scores = RNG.uniform(0, 1, (2, 3, 40)).astype(np.float32)
    scores[0, 0, :5] = 0.5  # ties resolve to the lower index
    feeds = {"boxes": boxes, "scores": scores, "max_output_boxes_per_class": np.array([7], dtype=np.int64),
             "iou_threshold": _f32(0.3), "score_threshold": _f32(0.2)}
    model = _model("NonMaxSuppression", feeds, opset, np.int64, center_point_box=center_point_box)
    check(model, feeds)
    check(model, feeds, oracle="onnxruntime")


def test_non_max_suppression_without_optional_inputs_selects_nothing():
    feeds = {"boxes": _random_boxes(1, 4), "scores": RNG.uniform(0, 1, (1, 1, 4)).astype(np.float32)}
    check(node_model("NonMaxSuppression", feeds, ["y"], opset=11), feeds, expected=[np.zeros((0, 3), np.int64)])


@pytest.mark.parametrize("shape,axes", [((3, 8, 5), None), ((2, 3), [1, 2]), ((7, 2), [-3, -1])])
def test_center_crop_pad(shape, axes):
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    feeds = {"x": x, "shape": np.array(shape, dtype=np.int64)}
    kw = {} if axes is None else {"axes": axes}
    check(node_model("CenterCropPad", feeds, ["y"], opset=18, **kw), feeds)


def _encode(pixels: np.ndarray, fmt: str) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def test_image_decoder_png_rgb_bgr_grayscale():
    pixels = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    feeds = {"encoded": _encode(pixels, "PNG")}
    check(node_model("ImageDecoder", feeds, ["y"], opset=20), feeds, expected=[pixels])
    check(node_model("ImageDecoder", feeds, ["y"], opset=20, pixel_format="BGR"), feeds, expected=[pixels[:, :, ::-1]])
    gray = np.round(pixels.astype(np.float64) @ [0.299, 0.587, 0.114])
    out = run_onnxpy(node_model("ImageDecoder", feeds, ["y"], opset=20, pixel_format="Grayscale"), feeds)[0]
    assert out.shape == (6, 5, 1) and out.dtype == np.uint8
    assert np.abs(out[:, :, 0].astype(np.float64) - gray).max() <= 1


def test_image_decoder_rejects_garbage():
    feeds = {"encoded": np.frombuffer(b"not an image", dtype=np.uint8)}
    with pytest.raises(Exception, match="decode"):
        run_onnxpy(node_model("ImageDecoder", feeds, ["y"], opset=20), feeds)
