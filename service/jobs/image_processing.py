"""`image-processing`: resize, thumbnail, crop, rotate, grayscale and convert an image (Pillow).

Decoding, each operation and encoding run in a thread (`asyncio.to_thread`): Pillow releases
the GIL for most of that work, and the worker's event loop stays free to renew leases,
heartbeat and run other jobs meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.artifacts import artifact_key, get_artifact_store
from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.errors import PermanentJobError
from service.queue.job_context import JobContext
from service.queue.options import Backoff

if TYPE_CHECKING:
    from PIL import Image

# Output sides above this are refused: a 20k x 20k RGBA image is 1.6 GB of memory.
MAX_SIDE = 20_000
# Inline images are capped (~7.5 MB decoded); bigger ones belong in artifact storage.
MAX_BASE64_CHARS = 10_000_000
OutputFormat = Literal["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]
CONTENT_TYPES: dict[str, str] = {
    "PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif",
    "BMP": "image/bmp", "TIFF": "image/tiff",
}  # fmt: skip
# Modes each format's Pillow writer takes; anything else is converted first (JPEG has no
# alpha, PNG no CMYK: a print-ready CMYK JPEG must still become a PNG).
_FORMAT_MODES: dict[str, tuple[str, ...]] = {
    "PNG": ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"),
    "JPEG": ("L", "RGB", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("1", "L", "LA", "P", "RGB", "RGBA"),  # the GIF writer quantises these itself
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "I", "I;16", "F", "P", "PA", "RGB", "RGBA", "CMYK"),
}
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


class Resize(BaseModel):
    """Scale to exactly width x height, or to fit inside it when keep_aspect."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["resize"]
    width: Side
    height: Side
    keep_aspect: bool = False


class Thumbnail(BaseModel):
    """Shrink (never enlarge) to fit inside width x height, keeping the aspect ratio."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["thumbnail"]
    width: Side
    height: Side


class Crop(BaseModel):
    """Keep the box (left, top) to (right, bottom), in pixels; it must lie inside the image."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["crop"]
    left: int = Field(ge=0)
    top: int = Field(ge=0)
    right: Side
    bottom: Side

    @model_validator(mode="after")
    def _positive_box(self) -> Crop:
        if self.right <= self.left or self.bottom <= self.top:
            raise ValueError("crop box needs right > left and bottom > top")
        return self


class Rotate(BaseModel):
    """Rotate counter-clockwise by degrees; `expand` grows the canvas to fit the result."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["rotate"]
    degrees: float = Field(ge=-360, le=360)
    expand: bool = True


class Grayscale(BaseModel):
    """Convert to 8-bit grayscale (an alpha channel is kept)."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["grayscale"]


Operation = Annotated[Resize | Thumbnail | Crop | Rotate | Grayscale, Field(discriminator="op")]


class ImageProcessingPayload(BaseModel):
    """An image (artifact URI or base64), the operations in order, and the output format."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(default=None, description="file:///... or s3://bucket/key")
    image_base64: str | None = Field(default=None, max_length=MAX_BASE64_CHARS)
    operations: list[Operation] = Field(default_factory=list, max_length=20)
    # None keeps the input's format; this is the "format conversion" operation.
    output_format: OutputFormat | None = None
    quality: int = Field(default=85, ge=1, le=100, description="JPEG/WEBP quality")

    @field_validator("output_format", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.upper()
            return "JPEG" if value == "JPG" else value
        return value

    @field_validator("image_base64")
    @classmethod
    def _is_base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("image_base64 is not valid base64") from exc
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ImageProcessingPayload:
        if (self.uri is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of uri or image_base64")
        return self


class ImageProcessingResult(BaseModel):
    """The output image and its properties."""

    output_uri: str
    size_bytes: int
    content_type: str
    format: str
    width: int
    height: int
    mode: str
    source_width: int
    source_height: int
    source_format: str


def open_image(data: bytes) -> Image.Image:
    """Decode an image fully, upright per its EXIF orientation; PermanentJobError if not one."""
    # Pillow is imported when an image job first runs: a worker's start-up skips it.
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise PermanentJobError(f"not a readable image: {exc}") from exc
    source_format = image.format or "PNG"
    upright = ImageOps.exif_transpose(image)
    upright.format = source_format
    return upright


def apply(image: Image.Image, op: Resize | Thumbnail | Crop | Rotate | Grayscale) -> Image.Image:
    """One operation; returns a new image (the input is left unchanged).

    Pillow's ValueError/OSError here (a mode an operation does not support) is permanent: the
    same image fails the same way on every attempt.
    """
    try:
        return _apply(image, op)
    except (OSError, ValueError) as exc:
        raise PermanentJobError(f"{op.op} failed on a {image.mode} image: {exc}") from exc


def _apply(image: Image.Image, op: Resize | Thumbnail | Crop | Rotate | Grayscale) -> Image.Image:
    from PIL import ImageOps

    if isinstance(op, Resize):
        if op.keep_aspect:
            return ImageOps.contain(image, (op.width, op.height))
        return image.resize((op.width, op.height))
    if isinstance(op, Thumbnail):
        thumb = image.copy()
        thumb.thumbnail((op.width, op.height))
        return thumb
    if isinstance(op, Crop):
        if op.right > image.width or op.bottom > image.height:
            raise PermanentJobError(
                f"crop box ({op.left}, {op.top}, {op.right}, {op.bottom}) is outside the "
                f"{image.width}x{image.height} image"
            )
        return image.crop((op.left, op.top, op.right, op.bottom))
    if isinstance(op, Rotate):
        return image.rotate(op.degrees, expand=op.expand)
    return image.convert("LA" if image.has_transparency_data else "L")


def storable_mode(mode: str, has_alpha: bool, fmt: str) -> str:
    """`mode` if `fmt` can store it, else the closest mode it can (keeping gray and alpha)."""
    allowed = _FORMAT_MODES[fmt]
    if mode in allowed:
        return mode
    gray = mode in _GRAY_MODES
    preferences: tuple[str, ...]
    if gray and has_alpha:
        preferences = ("LA", "RGBA", "L", "RGB")
    elif gray:
        preferences = ("L", "RGB")
    else:
        preferences = ("RGBA", "RGB") if has_alpha else ("RGB",)
    return next(m for m in preferences if m in allowed)  # every format takes RGB


def encode(image: Image.Image, fmt: str, quality: int) -> tuple[bytes, str]:
    """The image in `fmt` and the mode written, converting first if `fmt` cannot store the mode.

    An encoder failure is a PermanentJobError: the same pixels fail the same way on a retry.
    """
    from PIL import Image

    buffer = io.BytesIO()
    try:
        mode = storable_mode(image.mode, image.has_transparency_data, fmt)
        if mode != image.mode:
            image = image.convert(mode)
        image.save(buffer, format=fmt, quality=quality)
    except (OSError, ValueError) as exc:
        raise PermanentJobError(f"cannot write a {image.mode} image as {fmt}: {exc}") from exc
    data = buffer.getvalue()
    # Some encoders convert on their own (GIF to a palette); report what the file holds.
    # Opening reads only the header.
    with Image.open(io.BytesIO(data)) as written:
        return data, written.mode


async def _source_bytes(payload: ImageProcessingPayload) -> bytes:
    if payload.image_base64 is not None:
        return base64.b64decode(payload.image_base64)
    assert payload.uri is not None  # the validator guarantees one source
    return await get_artifact_store().get(payload.uri)


@job_type(
    "image-processing",
    ImageProcessingPayload,
    defaults=JobTypeDefaults(
        attempts=3,
        backoff=Backoff(type="exponential", delay_seconds=2, max_delay_seconds=120),
        timeout_seconds=120,
        # CPU- and memory-heavy: at most 4 at once across the whole fleet keeps one burst of
        # big images from starving every worker (and their lease renewals) at the same time.
        concurrency=4,
    ),
)
async def process_image(payload: ImageProcessingPayload, job: JobContext) -> ImageProcessingResult:
    """Apply the operations in order and store the output image as an artifact."""
    source = await asyncio.to_thread(open_image, await _source_bytes(payload))
    source_format = source.format or "PNG"
    steps = len(payload.operations) + 2
    await job.progress(100 / steps, f"decoded {source.width}x{source.height} {source_format}")
    image = source
    for index, op in enumerate(payload.operations, start=1):
        image = await asyncio.to_thread(apply, image, op)
        await job.progress(100 * (index + 1) / steps, f"{op.op}: {image.width}x{image.height}")
    fmt = payload.output_format or (source_format if source_format in CONTENT_TYPES else "PNG")
    data, mode = await asyncio.to_thread(encode, image, fmt, payload.quality)
    key = artifact_key("image-processing", job.job_id, f"output.{fmt.lower()}")
    artifact = await get_artifact_store().put(key, data, CONTENT_TYPES[fmt])
    await job.progress(100, f"stored {artifact.size_bytes} bytes")
    return ImageProcessingResult(
        output_uri=artifact.uri,
        size_bytes=artifact.size_bytes,
        content_type=artifact.content_type,
        format=fmt,
        width=image.width,
        height=image.height,
        mode=mode,
        source_width=source.width,
        source_height=source.height,
        source_format=source_format,
    )
