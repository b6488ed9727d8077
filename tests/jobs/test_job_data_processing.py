"""data-processing: real CSV and JSON datasets through filters, reshaping and aggregates."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from job_test_support import loop_pauses_while, run_job

from service.artifacts import LocalArtifactStore
from service.jobs.data_processing import (
    YIELD_EVERY_SECONDS,
    DataProcessingPayload,
    Filter,
    InSet,
    matches,
    transform,
)
from service.jobs.registry import REGISTRY
from service.queue.errors import InvalidJobError, PermanentJobError
from service.queue.queue import QueueConfig

SALES_CSV = """region,product,units,price
north,apple,10,1.5
north,pear,5,2.0
south,apple,7,1.5
south,plum,,3.0
east,apple,3,1.0
north,plum,2,3.0
"""

PEOPLE = [
    {"name": "Ada", "age": 36, "city": "London"},
    {"name": "Linus", "age": 28, "city": "Helsinki"},
    {"name": "Grace", "age": 45, "city": "New York"},
    {"name": "Guido", "age": 30, "city": "Amsterdam"},
]


async def test_csv_group_by_gives_known_aggregates_and_stores_them(queue, job_settings):
    data = {
        "dataset": {"csv": SALES_CSV},
        "filters": [{"field": "price", "op": "lt", "value": 3}],
        "group_by": ["region"],
        "aggregates": [
            {"op": "count", "as": "orders"},
            {"op": "sum", "field": "units"},
            {"op": "mean", "field": "price"},
            {"op": "min", "field": "units"},
            {"op": "max", "field": "units"},
        ],
    }
    result, job = await run_job(queue, "data-processing", data)

    assert job.data["aggregates"][0] == {"op": "count", "field": None, "as": "orders"}
    expected = [
        {
            "region": "north",
            "orders": 2,
            "sum_units": 15.0,
            "mean_price": 1.75,
            "min_units": 5.0,
            "max_units": 10.0,
        },
        {
            "region": "south",
            "orders": 1,
            "sum_units": 7.0,
            "mean_price": 1.5,
            "min_units": 7.0,
            "max_units": 7.0,
        },
        {
            "region": "east",
            "orders": 1,
            "sum_units": 3.0,
            "mean_price": 1.0,
            "min_units": 3.0,
            "max_units": 3.0,
        },
    ]
    assert result["rows_in"] == 6
    assert result["rows_matched"] == 4
    assert result["rows_out"] == 3
    assert result["preview"] == expected
    stored = await LocalArtifactStore(job_settings.artifact_dir).get(result["output_uri"])
    assert json.loads(stored) == expected
    assert result["output_size_bytes"] == len(stored)
    assert result["output_uri"].startswith((job_settings.artifact_dir.resolve()).as_uri())
    assert job.progress == 100


async def test_aggregates_skip_empty_values_but_count_counts_rows(queue, job_settings):
    data = {
        "dataset": {"csv": SALES_CSV},
        "filters": [{"field": "region", "value": "south"}],
        "group_by": ["region"],
        "aggregates": [
            {"op": "count"},
            {"op": "count", "field": "units", "as": "with_units"},
            {"op": "mean", "field": "units"},
        ],
    }
    result, _ = await run_job(queue, "data-processing", data)
    assert result["preview"] == [
        {"region": "south", "count": 2, "with_units": 1, "mean_units": 7.0}
    ]


async def test_aggregate_without_group_by_summarises_the_whole_dataset(queue, job_settings):
    data = {
        "dataset": {"records": PEOPLE},
        "aggregates": [{"op": "mean", "field": "age"}, {"op": "max", "field": "age"}],
    }
    result, _ = await run_job(queue, "data-processing", data)
    assert result["preview"] == [{"mean_age": 34.75, "max_age": 45.0}]


async def test_json_records_filtered_selected_renamed_to_csv_artifact(queue, job_settings):
    data = {
        "dataset": {"records": PEOPLE},
        "filters": [
            {"field": "age", "op": "gte", "value": 30},
            {"field": "city", "op": "ne", "value": "Amsterdam"},
        ],
        "select": ["name", "city"],
        "rename": {"city": "town"},
        "output_format": "csv",
    }
    result, _ = await run_job(queue, "data-processing", data)

    assert result["content_type"] == "text/csv"
    assert result["columns"] == ["name", "town"]
    text = (await LocalArtifactStore(job_settings.artifact_dir).get(result["output_uri"])).decode()
    assert list(csv.DictReader(io.StringIO(text))) == [
        {"name": "Ada", "town": "London"},
        {"name": "Grace", "town": "New York"},
    ]
    assert result["output_uri"].endswith("/output.csv")


async def test_dataset_read_from_an_artifact_uri(queue, job_settings):
    store = LocalArtifactStore(job_settings.artifact_dir)
    source = await store.put("inputs/sales.csv", SALES_CSV.encode(), "text/csv")
    data = {
        "dataset": {"uri": source.uri},
        "filters": [{"field": "product", "op": "in", "value": ["apple", "plum"]}],
        "group_by": ["product"],
        "aggregates": [{"op": "sum", "field": "units"}],
    }
    result, _ = await run_job(queue, "data-processing", data)
    assert result["preview"] == [
        {"product": "apple", "sum_units": 20.0},
        {"product": "plum", "sum_units": 2.0},
    ]


async def test_dataset_uri_outside_the_artifact_folder_fails_permanently(
    queue, job_settings, tmp_path: Path
):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(PEOPLE))
    traversal = (job_settings.artifact_dir / ".." / "secret.json").as_uri()
    for uri in (secret.as_uri(), traversal, "file:///etc/passwd"):
        with pytest.raises(PermanentJobError, match="outside the artifact folder"):
            await run_job(queue, "data-processing", {"dataset": {"uri": uri, "format": "json"}})


class RecordingJob:
    """Stands in for JobContext where only progress matters."""

    def __init__(self) -> None:
        self.progress_calls: list[tuple[float, str]] = []

    async def progress(self, percent: float, message: str = "") -> None:
        self.progress_calls.append((percent, message))


async def test_rows_are_processed_in_chunks_with_progress_after_each():
    payload = DataProcessingPayload.model_validate(
        {"dataset": {"records": PEOPLE}, "chunk_size": 3}
    )
    job = RecordingJob()
    out, matched = await transform(payload, PEOPLE, job)  # type: ignore[arg-type]
    assert (len(out), matched) == (4, 4)
    assert job.progress_calls == [(68.75, "processed 3 of 4 rows"), (90.0, "processed 4 of 4 rows")]


async def test_sum_of_text_fails_permanently_naming_the_value(queue, job_settings):
    data = {"dataset": {"csv": SALES_CSV}, "aggregates": [{"op": "sum", "field": "product"}]}
    with pytest.raises(PermanentJobError, match="'apple' is not a number"):
        await run_job(queue, "data-processing", data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"dataset": {"csv": "a\n1", "records": []}}, "data.dataset"),
        ({"dataset": {"csv": "a\n1"}, "group_by": ["a"]}, "data"),
        ({"dataset": {"csv": "a\n1"}, "aggregates": [{"op": "sum"}]}, "data.aggregates.0"),
        (
            {"dataset": {"csv": "a\n1"}, "filters": [{"field": "a", "op": "like", "value": 1}]},
            "data.filters.0.op",
        ),
        ({"dataset": {"csv": "a\n1"}, "chunk_size": 0}, "data.chunk_size"),
    ],
)
async def test_bad_payload_is_rejected_at_enqueue_naming_the_field(queue, data, field):
    with pytest.raises(InvalidJobError) as caught:
        REGISTRY.get("data-processing").build_spec(data, QueueConfig())
    assert field in [error["field"] for error in caught.value.details["errors"]]
    assert sum((await queue.counts()).by_state.values()) == 0


async def test_a_ragged_csv_fails_permanently_naming_the_line(queue, job_settings):
    data = {"dataset": {"csv": "a,b\n1,2\n3,4,5\n"}}
    with pytest.raises(PermanentJobError, match="CSV line 3 has more fields than the header's 2"):
        await run_job(queue, "data-processing", data)


async def test_an_unreadable_csv_fails_permanently(queue, job_settings):
    huge_field = "a\n" + "x" * 200_000 + "\n"  # over the csv module's field size limit
    limit = r"CSV line \d+ cannot be read: field larger than field limit"
    with pytest.raises(PermanentJobError, match=limit):
        await run_job(queue, "data-processing", {"dataset": {"csv": huge_field}})


async def test_json_records_group_by_a_list_or_object_value(queue, job_settings):
    records = [
        {"tags": ["a", "b"], "meta": {"k": 1}, "n": 1},
        {"tags": ["a", "b"], "meta": {"k": 1}, "n": 2},
        {"tags": ["c"], "meta": {"k": 2}, "n": 5},
    ]
    data = {
        "dataset": {"records": records},
        "group_by": ["tags", "meta"],
        "aggregates": [{"op": "count"}, {"op": "sum", "field": "n"}],
    }
    result, _ = await run_job(queue, "data-processing", data)
    assert result["preview"] == [
        {"tags": ["a", "b"], "meta": {"k": 1}, "count": 2, "sum_n": 3.0},
        {"tags": ["c"], "meta": {"k": 2}, "count": 1, "sum_n": 5.0},
    ]


async def test_parsing_and_writing_a_big_dataset_leave_the_event_loop_free(queue, job_settings):
    rows = 200_000
    text = "region,units\n" + "".join(f"r{i % 7},{i % 100}\n" for i in range(rows))
    store = LocalArtifactStore(job_settings.artifact_dir)
    source = await store.put("inputs/big.csv", text.encode(), "text/csv")
    data = {"dataset": {"uri": source.uri}, "output_format": "csv", "chunk_size": 50_000}
    (result, _), gaps, elapsed = await loop_pauses_while(run_job(queue, "data-processing", data))
    assert (result["rows_in"], result["rows_out"]) == (rows, rows)
    # Parsing 200,000 rows inline stalls the loop for most of a second at once; in a thread
    # each pause is a small share of the run (relative, so a faster machine proves the same).
    assert max(gaps) < min(0.25, elapsed / 3), (
        f"event loop blocked for {max(gaps):.2f}s of {elapsed:.2f}s"
    )


# Values of every kind a JSON record or filter can hold, including the cross-type cases the
# `in` filter's text and number rules decide: "5" vs 5, 1 vs true, None vs "None".
MIXED_VALUES = [5, 5.0, "5", "5.0", 1, True, False, 0, "True", None, "None", "", "x", 2.5,
                [1], {"k": 1}, "[1]", -0.0]  # fmt: skip


def test_the_in_index_answers_exactly_as_comparing_each_value() -> None:
    for size in range(len(MIXED_VALUES) + 1):
        wanted = MIXED_VALUES[:size] + MIXED_VALUES[size + 1 :]
        flt = Filter(field="v", op="in", value=wanted)
        index = InSet(wanted)
        for actual in [*MIXED_VALUES, "missing-from-all", 7]:
            assert (actual in index) == matches({"v": actual}, flt), (actual, wanted)


async def test_a_big_in_filter_does_not_hold_the_event_loop(queue, job_settings):
    # The job: 1,000 records and an `in` filter of 100,000 values (about 200 KB). With a
    # linear scan per row it held its worker's loop for two minutes; indexed, the pipeline's
    # pauses are a small share of the run.
    records = [{"id": i, "name": f"n{i}"} for i in range(1000)]
    values = list(range(0, 200_000, 2))
    data = {
        "dataset": {"records": records},
        "filters": [{"field": "id", "op": "in", "value": values}],
    }
    (result, _), gaps, elapsed = await loop_pauses_while(run_job(queue, "data-processing", data))
    assert (result["rows_in"], result["rows_matched"]) == (1000, 500)
    assert max(gaps) < min(0.25, elapsed / 2), f"loop blocked {max(gaps):.3f}s of {elapsed:.3f}s"


async def test_one_big_chunk_still_hands_the_loop_back_while_it_runs():
    # 100,000-row chunks with filters that cost something per row: progress comes once per
    # chunk, but the loop gets a turn every YIELD_EVERY_SECONDS of work.
    rows = [{"name": f"person-{i}", "n": i} for i in range(200_000)]
    payload = DataProcessingPayload.model_validate(
        {"dataset": {"records": rows}, "chunk_size": 100_000,
         "filters": [{"field": "name", "op": "contains", "value": "9"},
                     {"field": "n", "op": "gte", "value": 10}]}
    )  # fmt: skip
    (out, matched), gaps, elapsed = await loop_pauses_while(
        transform(payload, rows, RecordingJob())  # type: ignore[arg-type]
    )
    assert matched == len(out) > 0
    assert elapsed > 10 * YIELD_EVERY_SECONDS, "too little work to prove anything"
    assert max(gaps) < elapsed / 4, f"loop blocked {max(gaps):.3f}s of {elapsed:.3f}s"
