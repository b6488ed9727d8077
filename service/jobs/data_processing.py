"""`data-processing`: filter, reshape and aggregate a dataset; the output is an artifact.

The pipeline, in order: `filters` (all must match) -> `select` -> `rename` -> `group_by` +
`aggregates`. Filters and select use the input's field names; group_by and aggregates use the
names after rename. Rows are processed in chunks of `chunk_size`, with progress after each.

CSV values are text; comparisons with a number and the numeric aggregates read them as numbers.
Empty and missing values are skipped by aggregates (as SQL skips NULL); `count` counts rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.artifacts import artifact_key, get_artifact_store
from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.errors import PermanentJobError
from service.queue.job_context import JobContext
from service.queue.options import Backoff

Row = dict[str, Any]
# Output rows copied into the job's result, so a client sees a sample without fetching the file.
PREVIEW_ROWS = 20
# The pipeline runs on the worker's event loop and hands it back at least this often, whatever
# the chunk size or the filters cost, so heartbeats, cancel signals and other jobs keep running.
YIELD_EVERY_SECONDS = 0.01


class Dataset(BaseModel):
    """A dataset: inline JSON records, inline CSV text, or an artifact URI (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    records: list[Row] | None = None
    csv: str | None = None
    uri: str | None = Field(default=None, description="file:///... or s3://bucket/key")
    # For `uri`: how to parse it; "auto" goes by the extension (.csv, else JSON).
    format: Literal["auto", "csv", "json"] = "auto"

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Dataset:
        given = [name for name in ("records", "csv", "uri") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of records, csv or uri")
        return self

    async def load(self) -> list[Row]:
        """The rows; PermanentJobError if the data cannot be parsed."""
        if self.records is not None:
            return self.records
        # Parsing a big dataset takes seconds of CPU: in a thread, so the worker's event loop
        # keeps renewing leases and heartbeating meanwhile.
        if self.csv is not None:
            return await asyncio.to_thread(parse_csv, self.csv)
        assert self.uri is not None  # the validator guarantees one source
        raw = await get_artifact_store().get(self.uri)
        return await asyncio.to_thread(parse_bytes, raw, self._format_of_uri(self.uri))

    def _format_of_uri(self, uri: str) -> Literal["csv", "json"]:
        if self.format != "auto":
            return self.format
        return "csv" if uri.lower().endswith(".csv") else "json"


def parse_csv(text: str) -> list[Row]:
    """CSV text with a header row as records; PermanentJobError for text that is not such a CSV.

    A row with more fields than the header would come back with a `None` key holding the extra
    values, which no filter or column can name: that is bad input, said as such.
    """
    reader = csv.DictReader(io.StringIO(text))
    rows: list[Row] = []
    try:
        for row in reader:
            if None in row:
                raise PermanentJobError(
                    f"CSV line {reader.line_num} has more fields than the header's "
                    f"{len(reader.fieldnames or [])}"
                )
            rows.append(dict(row))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise PermanentJobError(f"CSV line {reader.line_num} cannot be read: {exc}") from exc
    return rows


def parse_bytes(raw: bytes, fmt: Literal["csv", "json"]) -> list[Row]:
    """Records from a stored CSV or JSON (a list of objects) file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PermanentJobError(f"dataset is not UTF-8 text: {exc}") from exc
    if fmt == "csv":
        return parse_csv(text)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermanentJobError(f"dataset is not valid JSON: {exc}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PermanentJobError("a JSON dataset must be a list of objects")
    return records


class Filter(BaseModel):
    """Keep rows whose `field` compares to `value` with `op`."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"] = "eq"
    value: Any

    @model_validator(mode="after")
    def _in_takes_a_list(self) -> Filter:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value")
        return self


class Aggregate(BaseModel):
    """One aggregate column of a group-by."""

    # Stored jobs show `as`, the name clients wrote, not the Python attribute name.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    op: Literal["count", "sum", "mean", "min", "max"]
    field: str | None = Field(default=None, description="required except for count")
    name: str | None = Field(default=None, alias="as", description="output column name")

    @model_validator(mode="after")
    def _field_unless_count(self) -> Aggregate:
        if self.op != "count" and not self.field:
            raise ValueError(f"aggregate {self.op!r} needs a field")
        return self

    @property
    def column(self) -> str:
        """The output column's name."""
        return self.name or (self.op if self.field is None else f"{self.op}_{self.field}")


class DataProcessingPayload(BaseModel):
    """What to do with which dataset."""

    model_config = ConfigDict(extra="forbid")

    dataset: Dataset
    filters: list[Filter] = Field(default_factory=list, max_length=50)
    select: list[str] | None = Field(default=None, min_length=1)
    rename: dict[str, str] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=list, max_length=10)
    aggregates: list[Aggregate] = Field(default_factory=list, max_length=50)
    output_format: Literal["json", "csv"] = "json"
    chunk_size: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _aggregates_need_groups(self) -> DataProcessingPayload:
        if self.group_by and not self.aggregates:
            raise ValueError("group_by needs at least one aggregate")
        return self


class DataProcessingResult(BaseModel):
    """Summary of a run, and where the output is."""

    rows_in: int
    rows_matched: int
    rows_out: int
    columns: list[str]
    preview: list[Row]
    output_uri: str
    output_size_bytes: int
    content_type: str


def as_number(value: Any) -> float | None:
    """A value as a number (CSV text included); None when empty or not numeric."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        return as_number(actual) == float(wanted)
    return actual == wanted or (actual is not None and str(actual) == str(wanted))


def _order(actual: Any, wanted: Any) -> tuple[Any, Any] | None:
    """A comparable pair: both numbers when `wanted` is one, else both strings."""
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        number = as_number(actual)
        return None if number is None else (number, float(wanted))
    return None if actual is None else (str(actual), str(wanted))


_ORDER_OPS = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


class InSet:
    """The values of an `in` filter, indexed so a row is checked in O(1), not O(values):
    1,000 rows against 100,000 values was 10^8 comparisons (minutes of a blocked worker).

    Same answers as `any(_equal(actual, v) for v in values)`: a number matches by value
    (`"5"` matches 5), anything else by equality or by its text (`5` matches `"5"`).
    """

    def __init__(self, values: list[Any]) -> None:
        self.numbers: set[float] = set()
        self.hashable: set[Hashable] = set()
        self.unhashable: list[Any] = []  # lists and objects: compared one by one
        self.texts: set[str] = set()
        for value in values:
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.numbers.add(float(value))
                continue
            self.texts.add(str(value))
            if isinstance(value, Hashable):
                self.hashable.add(value)
            else:
                self.unhashable.append(value)

    def __contains__(self, actual: Any) -> bool:
        if self.numbers and as_number(actual) in self.numbers:
            return True
        if isinstance(actual, Hashable):
            if actual in self.hashable:
                return True
        elif any(actual == value for value in self.unhashable):
            return True
        return actual is not None and str(actual) in self.texts


RowTest = Callable[[Row], bool]


def compile_filter(flt: Filter) -> RowTest:
    """A test of one row against `flt`, with its per-filter work (the `in` index) done once."""
    if flt.op == "in":
        values = InSet(flt.value)
        return lambda row: row.get(flt.field) in values
    return lambda row: matches(row, flt)


def matches(row: Row, flt: Filter) -> bool:
    """Whether `row` passes `flt`."""
    actual = row.get(flt.field)
    if flt.op == "eq":
        return _equal(actual, flt.value)
    if flt.op == "ne":
        return not _equal(actual, flt.value)
    if flt.op == "in":
        return any(_equal(actual, wanted) for wanted in flt.value)
    if flt.op == "contains":
        return actual is not None and str(flt.value) in str(actual)
    pair = _order(actual, flt.value)
    return pair is not None and bool(_ORDER_OPS[flt.op](*pair))


def shape(row: Row, select: list[str] | None, rename: dict[str, str]) -> Row:
    """The row with only the selected fields, renamed."""
    if select is not None:
        row = {name: row.get(name) for name in select}
    return {rename.get(name, name): value for name, value in row.items()}


class _Accumulator:
    """Running count/sum/min/max of one aggregate in one group."""

    def __init__(self, spec: Aggregate) -> None:
        self.spec = spec
        self.rows = 0
        self.count = 0
        self.total = 0.0
        self.low: float | None = None
        self.high: float | None = None

    def add(self, row: Row) -> None:
        self.rows += 1
        if self.spec.field is None:
            return
        raw = row.get(self.spec.field)
        number = as_number(raw)
        if number is None:
            if raw not in (None, ""):
                raise PermanentJobError(
                    f"{self.spec.op} of {self.spec.field!r}: {raw!r} is not a number"
                )
            return
        self.count += 1
        self.total += number
        self.low = number if self.low is None else min(self.low, number)
        self.high = number if self.high is None else max(self.high, number)

    def value(self) -> float | int | None:
        op = self.spec.op
        if op == "count":
            return self.rows if self.spec.field is None else self.count
        if op == "sum":
            return self.total
        if op == "mean":
            return self.total / self.count if self.count else None
        return self.low if op == "min" else self.high


class GroupBy:
    """Group-by aggregation fed chunk by chunk."""

    def __init__(self, keys: list[str], aggregates: list[Aggregate]) -> None:
        self.keys = keys
        self.aggregates = aggregates
        self.groups: dict[tuple[Any, ...], list[_Accumulator]] = {}
        self.values: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # each group's key values

    def add(self, row: Row) -> None:
        """Fold one row into its group."""
        values = tuple(row.get(name) for name in self.keys)
        key = tuple(_hashable(value) for value in values)
        accumulators = self.groups.get(key)
        if accumulators is None:
            accumulators = self.groups[key] = [_Accumulator(spec) for spec in self.aggregates]
            self.values[key] = values
        for accumulator in accumulators:
            accumulator.add(row)

    def rows(self) -> list[Row]:
        """One row per group, in order of first appearance."""
        return [
            {
                **dict(zip(self.keys, self.values[key], strict=True)),
                **{a.spec.column: a.value() for a in accs},
            }
            for key, accs in self.groups.items()
        ]


def _hashable(value: Any) -> Any:
    """A group key for `value`: JSON records may group by a list or an object, which a dict
    key cannot be; equal values give equal keys."""
    if isinstance(value, list | dict):
        return ("json", json.dumps(value, sort_keys=True, default=str))
    return value


def chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive slices of at most `size` rows."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def render_output(rows: list[Row], fmt: Literal["json", "csv"]) -> tuple[bytes, str]:
    """The output file's bytes and content type."""
    if fmt == "json":
        return json.dumps(rows, default=str).encode(), "application/json"
    columns = column_names(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode(), "text/csv"


def column_names(rows: list[Row]) -> list[str]:
    """Every field name in the rows, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


class YieldClock:
    """Says when a stretch of work on the loop has run YIELD_EVERY_SECONDS: a cheap check per
    row, where awaiting something per row would cost more than most rows' work."""

    def __init__(self) -> None:
        self.since = time.monotonic()

    def due(self) -> bool:
        """True (and the clock restarts) once the current stretch is long enough."""
        now = time.monotonic()
        if now - self.since < YIELD_EVERY_SECONDS:
            return False
        self.since = now
        return True


async def transform(
    payload: DataProcessingPayload, rows: list[Row], job: JobContext
) -> tuple[list[Row], int]:
    """Run the pipeline over `rows` chunk by chunk; returns the output rows and the match count."""
    grouping = GroupBy(payload.group_by, payload.aggregates) if payload.aggregates else None
    tests = [compile_filter(flt) for flt in payload.filters]
    clock = YieldClock()
    out: list[Row] = []
    matched = done = 0
    for chunk in chunks(rows, payload.chunk_size):
        for row in chunk:
            if clock.due():
                await asyncio.sleep(0)  # heartbeats, cancel signals and other jobs run now
            if all(test(row) for test in tests):
                matched += 1
                shaped = shape(row, payload.select, payload.rename)
                if grouping is not None:
                    grouping.add(shaped)
                else:
                    out.append(shaped)
        done += len(chunk)
        # 5 % was loading, the last 10 % is writing the output.
        await job.progress(5 + 85 * done / len(rows), f"processed {done} of {len(rows)} rows")
    return (grouping.rows() if grouping is not None else out), matched


@job_type(
    "data-processing",
    DataProcessingPayload,
    defaults=JobTypeDefaults(
        attempts=3,
        backoff=Backoff(type="exponential", delay_seconds=2, max_delay_seconds=120),
        timeout_seconds=300,
    ),
)
async def process_data(payload: DataProcessingPayload, job: JobContext) -> DataProcessingResult:
    """Filter, select/rename and group-by-aggregate a dataset; store the output as an artifact."""
    rows = await payload.dataset.load()
    await job.progress(5, f"loaded {len(rows)} rows")
    out, matched = await transform(payload, rows, job)
    data, content_type = await asyncio.to_thread(render_output, out, payload.output_format)
    key = artifact_key("data-processing", job.job_id, f"output.{payload.output_format}")
    artifact = await get_artifact_store().put(key, data, content_type)
    await job.progress(100, f"wrote {len(out)} rows")
    return DataProcessingResult(
        rows_in=len(rows),
        rows_matched=matched,
        rows_out=len(out),
        columns=column_names(out),
        preview=out[:PREVIEW_ROWS],
        output_uri=artifact.uri,
        output_size_bytes=artifact.size_bytes,
        content_type=content_type,
    )
