"""report-generation: CSV, HTML and PDF reports from datasets and from the queue's statistics."""

from __future__ import annotations

import csv
import gc
import io

import pytest
from job_test_support import loop_pauses_while, run_job, start_job
from pypdf import PdfReader

from service.artifacts import LocalArtifactStore
from service.jobs.registry import REGISTRY
from service.queue.consumer import Consumer, Outcome
from service.queue.errors import InvalidJobError, PermanentJobError
from service.queue.queue import QueueConfig
from service.queue.states import Priority

RECORDS = [
    {"city": "Zürich", "visits": 120, "note": "<b>bold</b>"},
    {"city": "Oslo", "visits": 80, "note": None},
    {"city": "Kyoto", "visits": 95, "note": "寺"},
]


async def stored(result: dict, settings) -> bytes:
    data = await LocalArtifactStore(settings.artifact_dir).get(result["uri"])
    assert len(data) == result["size_bytes"]
    return data


async def test_pdf_report_from_a_dataset_parses_back_with_its_rows(queue, job_settings):
    data = {"dataset": {"records": RECORDS}, "format": "pdf", "title": "Visits ☃ report"}
    result, job = await run_job(queue, "report-generation", data)

    assert (result["content_type"], result["format"], result["rows"]) == (
        "application/pdf",
        "pdf",
        3,
    )
    reader = PdfReader(io.BytesIO(await stored(result, job_settings)))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # Helvetica is Latin-1: "ü" survives, the snowman and the kanji become "?".
    assert "Visits ? report" in text
    for expected in ("city", "visits", "Zürich", "120", "Oslo", "80", "Kyoto", "95", "<b>bold</b>"):
        assert expected in text
    assert reader.metadata.title == "Visits ? report"
    assert job.progress == 100


async def test_csv_report_from_a_csv_dataset_round_trips(queue, job_settings):
    source = "a,b\n1,x\n2,y\n3,z\n"
    data = {"dataset": {"csv": source}, "format": "csv", "columns": ["b", "a"], "max_rows": 2}
    result, _ = await run_job(queue, "report-generation", data)
    rows = list(csv.reader(io.StringIO((await stored(result, job_settings)).decode())))
    assert rows == [["b", "a"], ["x", "1"], ["y", "2"]]
    assert (result["rows"], result["truncated"], result["content_type"]) == (2, True, "text/csv")


async def test_html_report_escapes_the_data(queue, job_settings):
    data = {"dataset": {"records": RECORDS}, "format": "html", "title": "A & B"}
    result, _ = await run_job(queue, "report-generation", data)
    html = (await stored(result, job_settings)).decode()
    assert "<title>A &amp; B</title>" in html
    assert "<td>&lt;b&gt;bold&lt;/b&gt;</td>" in html
    assert "<td>Zürich</td><td>120</td>" in html
    assert result["uri"].endswith("/report.html")


async def test_queue_statistics_report_shows_the_queue_as_it_is(queue, job_settings):
    # Three waiting jobs, one of them then completed by a worker.
    noop = REGISTRY.get("noop")
    ids = [(await queue.enqueue(noop.build_spec({}, QueueConfig()))).job.id for _ in range(3)]
    consumer = Consumer(queue, "other-worker", lease_seconds=30)
    [delivery], _ = await consumer.dequeue(1)
    assert delivery.job_id == ids[0]
    await consumer.finish_many([Outcome(ids[0], completed=True, payload="null")])

    data = {"source": "queue-stats", "format": "csv", "title": "Queue"}
    context, stored_data = await start_job(queue, "report-generation", data, priority=Priority.HIGH)
    result = await REGISTRY.get("report-generation").run(stored_data, context)

    rows = list(csv.reader(io.StringIO((await stored(result, job_settings)).decode())))
    assert ["# Jobs by state"] in rows
    assert ["pending", "2"] in rows
    assert ["processing", "1"] in rows  # the report job itself
    assert ["completed", "1"] in rows
    assert ["normal", "2"] in rows
    assert ["completed", "1"] in rows[rows.index(["# Last 60 minutes"]) :]
    by_type = rows[rows.index(["# Jobs by type and state"]) + 1 :]
    header = by_type[0]
    noop_row = dict(zip(header, next(r for r in by_type if r and r[0] == "noop"), strict=True))
    assert (noop_row["pending"], noop_row["completed"]) == ("2", "1")


async def test_queue_statistics_pdf_report_parses_back(queue, job_settings):
    result, _ = await run_job(
        queue, "report-generation", {"source": "queue-stats", "format": "pdf"}
    )
    text = PdfReader(io.BytesIO(await stored(result, job_settings))).pages[0].extract_text()
    for heading in (
        "Jobs by state",
        "Pending by priority",
        "Jobs by type and state",
        "Last 60 minutes",
    ):
        assert heading in text


async def test_a_wide_pdf_report_goes_landscape_and_parses_back(queue, job_settings):
    records = [{f"col{i}": i * 10 + row for i in range(12)} for row in range(3)]
    result, _ = await run_job(
        queue, "report-generation", {"dataset": {"records": records}, "format": "pdf"}
    )
    page = PdfReader(io.BytesIO(await stored(result, job_settings))).pages[0]
    assert page.mediabox.width > page.mediabox.height  # A4 landscape
    text = page.extract_text()
    assert "col11" in text
    assert "112" in text  # the last cell of the last row


async def test_a_pdf_too_wide_for_any_page_fails_permanently(queue, job_settings):
    records = [{f"column_{i}": "x" * 50 for i in range(150)}]
    with pytest.raises(PermanentJobError, match=r"does not fit a PDF page \(150 columns\)"):
        await run_job(
            queue, "report-generation", {"dataset": {"records": records}, "format": "pdf"}
        )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"format": "pdf"}, "data"),
        ({"source": "queue-stats", "dataset": {"csv": "a\n1"}}, "data"),
        ({"dataset": {"csv": "a\n1"}, "format": "docx"}, "data.format"),
        ({"dataset": {"records": [1, 2]}}, "data.dataset.records.0"),
    ],
)
def test_bad_payload_is_rejected_at_enqueue_naming_the_field(data, field):
    with pytest.raises(InvalidJobError) as caught:
        REGISTRY.get("report-generation").build_spec(data, QueueConfig())
    assert field in [error["field"] for error in caught.value.details["errors"]]


async def test_a_big_csv_report_leaves_the_event_loop_free(queue, job_settings):
    # 100,000 rows of 5 columns: parsing, formatting the cells and writing the CSV run in
    # threads, so every pause of the loop is a small share of the run. (A guard: before this
    # test the formatting ran on the loop, about 50 ms here; the rendering was in a thread.)
    header = "a,b,c,d,e\n"
    text = header + "".join(f"{i},{i * 2},x{i},{i % 7},{i / 3:.2f}\n" for i in range(100_000))
    store = LocalArtifactStore(job_settings.artifact_dir)
    source = await store.put("inputs/wide.csv", text.encode(), "text/csv")
    data = {"dataset": {"uri": source.uri}, "format": "csv", "max_rows": 100_000}
    # As a worker does after start-up (broker.py): what earlier tests left alive is frozen, so a
    # garbage collection triggered by the job's threads walks only the job's own objects.
    gc.collect()
    gc.freeze()
    try:
        (result, _), gaps, elapsed = await loop_pauses_while(
            run_job(queue, "report-generation", data)
        )
    finally:
        gc.unfreeze()
    assert result["rows"] == 100_000
    assert max(gaps) < min(0.25, elapsed / 3), f"loop blocked {max(gaps):.3f}s of {elapsed:.3f}s"
