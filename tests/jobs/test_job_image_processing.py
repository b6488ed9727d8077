"""image-processing: a real PNG and a real JPEG through every operation, checked pixel-wise."""

from __future__ import annotations

import base64
import io

import pytest
from job_test_support import encoded, loop_pauses_while, quadrant_image, run_job
from PIL import Image

from service.artifacts import LocalArtifactStore
from service.jobs.registry import REGISTRY
from service.queue.errors import InvalidJobError, PermanentJobError
from service.queue.queue import QueueConfig

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


async def source_of(kind: str, png: bytes, jpeg: bytes, settings) -> dict:
    """PNG inline as base64; JPEG stored first and passed by artifact URI (both input paths)."""
    if kind == "png":
        return {"image_base64": base64.b64encode(png).decode()}
    stored = await LocalArtifactStore(settings.artifact_dir).put(
        "inputs/photo.jpg", jpeg, "image/jpeg"
    )
    return {"uri": stored.uri}


async def output_image(result: dict, settings) -> Image.Image:
    data = await LocalArtifactStore(settings.artifact_dir).get(result["output_uri"])
    assert len(data) == result["size_bytes"]
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close(pixel, expected, tolerance=12) -> bool:
    """JPEG is lossy: colours come back near, not equal."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


# (operation, expected size for the 200x100 PNG, expected size for the 300x200 JPEG)
OPERATIONS = [
    ({"op": "resize", "width": 50, "height": 40}, (50, 40), (50, 40)),
    ({"op": "resize", "width": 100, "height": 100, "keep_aspect": True}, (100, 50), (100, 67)),
    ({"op": "thumbnail", "width": 64, "height": 64}, (64, 32), (64, 43)),
    ({"op": "crop", "left": 10, "top": 5, "right": 90, "bottom": 45}, (80, 40), (80, 40)),
    ({"op": "rotate", "degrees": 90}, (100, 200), (200, 300)),
]


@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize(
    ("operation", "png_size", "jpeg_size"),
    OPERATIONS,
    ids=lambda v: v["op"] if isinstance(v, dict) else None,
)
async def test_each_geometry_operation_gives_the_expected_dimensions_and_keeps_mode(
    queue, job_settings, png_bytes, jpeg_bytes, kind, operation, png_size, jpeg_size
):
    source = await source_of(kind, png_bytes, jpeg_bytes, job_settings)
    result, job = await run_job(queue, "image-processing", {**source, "operations": [operation]})

    image = await output_image(result, job_settings)
    expected_size = png_size if kind == "png" else jpeg_size
    assert image.size == expected_size
    assert (result["width"], result["height"]) == expected_size
    assert image.format == ("PNG" if kind == "png" else "JPEG")
    assert image.mode == result["mode"] == ("RGBA" if kind == "png" else "RGB")
    assert job.progress == 100


@pytest.mark.parametrize("kind", ["png", "jpeg"])
async def test_crop_keeps_the_pixels_of_the_box(queue, job_settings, png_bytes, jpeg_bytes, kind):
    source = await source_of(kind, png_bytes, jpeg_bytes, job_settings)
    # The top-right quadrant is green in both images.
    box = {"op": "crop", "left": 160, "top": 10, "right": 190, "bottom": 40}
    result, _ = await run_job(queue, "image-processing", {**source, "operations": [box]})
    image = (await output_image(result, job_settings)).convert("RGB")
    assert image.size == (30, 30)
    assert close(image.getpixel((15, 15)), GREEN)


async def test_rotate_moves_quadrants(queue, job_settings, png_bytes, jpeg_bytes):
    source = await source_of("png", png_bytes, jpeg_bytes, job_settings)
    result, _ = await run_job(
        queue, "image-processing", {**source, "operations": [{"op": "rotate", "degrees": 90}]}
    )
    image = (await output_image(result, job_settings)).convert("RGB")
    # 90 degrees counter-clockwise: the top-right (green) quadrant ends up top-left.
    assert image.getpixel((10, 10)) == GREEN
    assert image.getpixel((10, 190)) == RED


@pytest.mark.parametrize(("kind", "mode"), [("png", "LA"), ("jpeg", "L")])
async def test_grayscale_gives_a_one_channel_image_with_luma_values(
    queue, job_settings, png_bytes, jpeg_bytes, kind, mode
):
    source = await source_of(kind, png_bytes, jpeg_bytes, job_settings)
    result, _ = await run_job(
        queue, "image-processing", {**source, "operations": [{"op": "grayscale"}]}
    )
    image = await output_image(result, job_settings)
    assert image.mode == result["mode"] == mode
    luma_of_red = image.getpixel((5, 5))
    luma_of_red = luma_of_red[0] if isinstance(luma_of_red, tuple) else luma_of_red
    assert abs(luma_of_red - 76) <= 3  # ITU-R 601: 0.299 * 255


async def test_png_with_alpha_converts_to_jpeg_in_rgb(queue, job_settings, png_bytes, jpeg_bytes):
    source = await source_of("png", png_bytes, jpeg_bytes, job_settings)
    result, _ = await run_job(
        queue, "image-processing", {**source, "output_format": "jpg", "quality": 90}
    )
    image = await output_image(result, job_settings)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (200, 100))
    assert result["content_type"] == "image/jpeg"
    assert result["output_uri"].endswith("/output.jpeg")
    assert close(image.getpixel((150, 80)), (255, 255, 255))


async def test_jpeg_converts_to_webp_and_operations_chain_in_order(
    queue, job_settings, png_bytes, jpeg_bytes
):
    source = await source_of("jpeg", png_bytes, jpeg_bytes, job_settings)
    operations = [
        {"op": "crop", "left": 0, "top": 0, "right": 150, "bottom": 100},  # the red quadrant
        {"op": "resize", "width": 30, "height": 20},
        {"op": "grayscale"},
    ]
    result, _ = await run_job(
        queue, "image-processing", {**source, "operations": operations, "output_format": "PNG"}
    )
    image = await output_image(result, job_settings)
    assert (image.format, image.mode, image.size) == ("PNG", "L", (30, 20))
    assert abs(image.getpixel((15, 10)) - 76) <= 6
    assert (result["source_width"], result["source_height"], result["source_format"]) == (
        300,
        200,
        "JPEG",
    )


async def test_heavy_image_work_leaves_the_event_loop_free(queue, job_settings):
    big = encoded(quadrant_image("RGB", (2500, 2500)), "JPEG")
    data = {
        "image_base64": base64.b64encode(big).decode(),
        "operations": [
            {"op": "resize", "width": 5000, "height": 5000},
            {"op": "thumbnail", "width": 50, "height": 50},
        ],
    }
    (result, _), gaps, elapsed = await loop_pauses_while(run_job(queue, "image-processing", data))
    assert (result["width"], result["height"]) == (50, 50)
    # Run inline, the work would stall the loop for about all of `elapsed` at once; in a thread
    # every pause of the loop is a small part of it. (Relative, so a faster machine that does
    # the resize quicker proves the same thing.)
    assert len(gaps) >= 10, f"the loop ticked only {len(gaps)} times in {elapsed:.2f}s"
    assert max(gaps) < min(0.25, elapsed / 3), (
        f"event loop blocked for {max(gaps):.2f}s of {elapsed:.2f}s"
    )


async def test_crop_outside_the_image_fails_permanently(queue, job_settings, png_bytes, jpeg_bytes):
    source = await source_of("png", png_bytes, jpeg_bytes, job_settings)
    box = {"op": "crop", "left": 0, "top": 0, "right": 500, "bottom": 50}
    with pytest.raises(PermanentJobError, match="outside the 200x100 image"):
        await run_job(queue, "image-processing", {**source, "operations": [box]})


async def test_bytes_that_are_not_an_image_fail_permanently(queue, job_settings):
    data = {"image_base64": base64.b64encode(b"definitely not a PNG").decode()}
    with pytest.raises(PermanentJobError, match="not a readable image"):
        await run_job(queue, "image-processing", data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"image_base64": "not base64!"}, "data.image_base64"),
        ({}, "data"),
        ({"uri": "file:///x.png", "operations": [{"op": "sharpen"}]}, "data.operations.0"),
        (
            {"uri": "file:///x.png", "operations": [{"op": "resize", "width": 0, "height": 5}]},
            "data.operations.0.resize.width",
        ),
        (
            {
                "uri": "file:///x.png",
                "operations": [{"op": "crop", "left": 5, "top": 0, "right": 5, "bottom": 9}],
            },
            "data.operations.0.crop",
        ),
        ({"uri": "file:///x.png", "output_format": "svg"}, "data.output_format"),
    ],
)
def test_bad_payload_is_rejected_at_enqueue_naming_the_field(data, field):
    with pytest.raises(InvalidJobError) as caught:
        REGISTRY.get("image-processing").build_spec(data, QueueConfig())
    assert field in [error["field"] for error in caught.value.details["errors"]]


@pytest.mark.parametrize(
    ("output_format", "mode"),
    [
        ("PNG", "RGBA"),
        ("JPEG", "RGB"),
        ("WEBP", "RGBA"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "RGBA"),
    ],
)
async def test_every_output_format_writes_a_readable_file_of_that_format(
    queue, job_settings, png_bytes, jpeg_bytes, output_format, mode
):
    source = await source_of("png", png_bytes, jpeg_bytes, job_settings)
    result, _ = await run_job(queue, "image-processing", {**source, "output_format": output_format})
    image = await output_image(result, job_settings)
    assert (image.format, image.mode, image.size) == (output_format, mode, (200, 100))
    assert result["mode"] == mode
    assert result["content_type"] == Image.MIME[output_format]


# Modes written for an RGB JPEG and for a print-ready CMYK JPEG, per output format.
JPEG_OUTPUT_MODES = {
    "PNG": ("RGB", "RGB"),
    "JPEG": ("RGB", "CMYK"),
    "WEBP": ("RGB", "RGB"),
    "GIF": ("P", "P"),
    "BMP": ("RGB", "RGB"),
    "TIFF": ("RGB", "CMYK"),
}


@pytest.mark.parametrize("cmyk", [False, True], ids=["rgb", "cmyk"])
@pytest.mark.parametrize("output_format", list(JPEG_OUTPUT_MODES))
async def test_a_jpeg_converts_to_every_output_format(
    queue, job_settings, jpeg_bytes, output_format, cmyk
):
    source = encoded(quadrant_image("CMYK", (300, 200)), "JPEG") if cmyk else jpeg_bytes
    data = {"image_base64": base64.b64encode(source).decode(), "output_format": output_format}
    result, _ = await run_job(queue, "image-processing", data)
    image = await output_image(result, job_settings)
    mode = JPEG_OUTPUT_MODES[output_format][cmyk]
    assert (image.format, image.mode, image.size) == (output_format, mode, (300, 200))
    assert result["mode"] == mode
    assert result["source_format"] == "JPEG"
    # The top-left quadrant is red whatever the colour model the pixels went through.
    assert close(image.convert("RGB").getpixel((20, 20)), RED, tolerance=40)


async def test_gray_with_alpha_keeps_its_alpha_in_a_format_without_gray_alpha(
    queue, job_settings, png_bytes, jpeg_bytes
):
    source = await source_of("png", png_bytes, jpeg_bytes, job_settings)
    data = {**source, "operations": [{"op": "grayscale"}], "output_format": "WEBP"}
    result, _ = await run_job(queue, "image-processing", data)
    image = await output_image(result, job_settings)
    assert (image.format, image.mode, result["mode"]) == ("WEBP", "RGBA", "RGBA")
    assert image.getpixel((150, 80))[3] == 128  # the half-transparent quadrant stayed so


async def test_an_operation_pillow_cannot_do_on_the_mode_fails_permanently(queue, job_settings):
    lab = encoded(Image.new("LAB", (20, 10), (50, 0, 0)), "TIFF")
    data = {"image_base64": base64.b64encode(lab).decode(), "operations": [{"op": "grayscale"}]}
    with pytest.raises(PermanentJobError, match="grayscale failed on a LAB image"):
        await run_job(queue, "image-processing", data)
