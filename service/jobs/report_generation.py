"""`report-generation`: a CSV, HTML or PDF report, from a dataset or the queue's own statistics.

A report is a title plus sections, each a table; the renderers turn that one shape into each
format. PDF uses fpdf2's core Helvetica font, which covers Latin-1 only: other characters are
printed as "?" rather than failing the job.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.artifacts import artifact_key, get_artifact_store
from service.jobs.data_processing import Dataset, column_names
from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.errors import PermanentJobError
from service.queue.job_context import JobContext
from service.queue.options import Backoff
from service.queue.queue import JobQueue

if TYPE_CHECKING:
    from jinja2 import Template

ReportFormat = Literal["csv", "html", "pdf"]
CONTENT_TYPES: dict[str, str] = {"csv": "text/csv", "html": "text/html", "pdf": "application/pdf"}
# Throughput window of a queue-statistics report, in minutes.
STATS_WINDOW_MINUTES = 60
# Beyond this many columns a portrait A4 table's cells get too narrow to read: go landscape.
PORTRAIT_MAX_COLUMNS = 8

# Our own template (not a client's), so a plain autoescaping Environment is enough; the data in
# it is escaped.
_HTML_SOURCE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}</style></head>
<body><h1>{{ title }}</h1><p>Generated {{ generated_at }}</p>
{% for section in sections %}<h2>{{ section.heading }}</h2>
<table><thead><tr>{% for c in section.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in section.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endfor %}</body></html>
"""


@functools.cache
def _html_template() -> Template:
    """The report's HTML template, compiled on first use (Jinja2 is slow to import)."""
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(_HTML_SOURCE)


class ReportPayload(BaseModel):
    """What to report on and in which format."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["dataset", "queue-stats"] = "dataset"
    dataset: Dataset | None = None
    format: ReportFormat = "pdf"
    title: str = Field(default="Report", min_length=1, max_length=200)
    columns: list[str] | None = Field(default=None, min_length=1, description="dataset columns")
    max_rows: int = Field(default=10_000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _dataset_when_needed(self) -> ReportPayload:
        if (self.source == "dataset") != (self.dataset is not None):
            raise ValueError("give a dataset exactly when source is 'dataset'")
        return self


class Section(BaseModel):
    """One table of a report."""

    heading: str
    columns: list[str]
    rows: list[list[Any]]


class Report(BaseModel):
    """A titled list of tables."""

    title: str
    generated_at: str
    sections: list[Section]


class ReportResult(BaseModel):
    """Where the report is and what it is."""

    uri: str
    size_bytes: int
    content_type: str
    format: ReportFormat
    rows: int
    truncated: bool


def dataset_section(records: list[dict[str, Any]], columns: list[str] | None) -> Section:
    """The records as one table (all their fields unless `columns` picks some)."""
    names = columns or column_names(records)
    return Section(
        heading="Data",
        columns=names,
        rows=[[_cell(record.get(name)) for name in names] for record in records],
    )


async def queue_sections(queue: JobQueue) -> list[Section]:
    """Counts per state, priority and type, throughput and wait, as tables."""
    counts = await queue.counts()
    done = await queue.throughput(STATS_WINDOW_MINUTES)
    states = [str(state) for state in counts.by_state]
    return [
        Section(
            heading="Jobs by state",
            columns=["state", "jobs"],
            rows=[[str(state), n] for state, n in counts.by_state.items()],
        ),
        Section(
            heading="Pending by priority",
            columns=["priority", "jobs"],
            rows=[[name, n] for name, n in counts.pending_by_priority.items()],
        ),
        Section(
            heading="Jobs by type and state",
            columns=["type", *states],
            rows=[
                [t, *(row.get(s, 0) for s in counts.by_state)]
                for t, row in sorted(counts.by_type.items())
            ],
        ),
        Section(
            heading=f"Last {STATS_WINDOW_MINUTES} minutes",
            columns=["measure", "value"],
            rows=[
                *([name, n] for name, n in done.items()),
                ["oldest pending age (s)", round(counts.oldest_pending_age_seconds, 1)],
            ],
        ),
    ]


def _cell(value: Any) -> Any:
    return "" if value is None else value


def render_csv(report: Report) -> bytes:
    """One table: the CSV; several: each preceded by its heading, separated by a blank line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for index, section in enumerate(report.sections):
        if len(report.sections) > 1:
            if index:
                writer.writerow([])
            writer.writerow([f"# {section.heading}"])
        writer.writerow(section.columns)
        writer.writerows(section.rows)
    return buffer.getvalue().encode()


def render_html(report: Report) -> bytes:
    """A standalone HTML page with one table per section."""
    return _html_template().render(report.model_dump()).encode()


def _latin1(value: Any) -> str:
    return str(value).encode("latin-1", "replace").decode("latin-1")


def render_pdf(report: Report) -> bytes:
    """An A4 PDF: title, timestamp, then each section as a table.

    Wide tables get a landscape page; one too wide even for that is a PermanentJobError (fpdf2
    cannot fit a character per column, and a retry would not either).
    """
    # fpdf2 (with fontTools) takes over a second to import: only workers that render PDFs pay.
    from fpdf.errors import FPDFException

    try:
        return _pdf_bytes(report)
    except FPDFException as exc:
        widest = max((len(section.columns) for section in report.sections), default=0)
        raise PermanentJobError(
            f"the report does not fit a PDF page ({widest} columns): {exc}; "
            "pick fewer columns or another format"
        ) from exc


def _pdf_bytes(report: Report) -> bytes:
    from fpdf import FPDF

    widest = max((len(section.columns) for section in report.sections), default=0)
    pdf = FPDF(orientation="L" if widest > PORTRAIT_MAX_COLUMNS else "P", format="A4")
    pdf.set_title(_latin1(report.title))
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(text=_latin1(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.cell(text=f"Generated {report.generated_at}", new_x="LMARGIN", new_y="NEXT")
    for section in report.sections:
        pdf.ln(4)
        pdf.set_font("Helvetica", style="B", size=12)
        pdf.cell(text=_latin1(section.heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        with pdf.table() as table:
            table.row([_latin1(c) for c in section.columns])
            for values in section.rows:
                table.row([_latin1(v) for v in values])
    return bytes(pdf.output())


RENDERERS = {"csv": render_csv, "html": render_html, "pdf": render_pdf}


async def build_report(payload: ReportPayload, job: JobContext) -> tuple[Report, int, bool]:
    """The report's content, its data row count and whether rows were cut at max_rows."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if payload.dataset is None:
        sections = await queue_sections(job.queue)
        return Report(title=payload.title, generated_at=now, sections=sections), 0, False
    records = await payload.dataset.load()
    truncated = len(records) > payload.max_rows
    # Up to 100,000 rows of cells to format: in a thread, like the rendering, so the worker's
    # loop keeps heartbeating and renewing leases meanwhile.
    section = await asyncio.to_thread(dataset_section, records[: payload.max_rows], payload.columns)
    report = Report(title=payload.title, generated_at=now, sections=[section])
    return report, len(section.rows), truncated


@job_type(
    "report-generation",
    ReportPayload,
    defaults=JobTypeDefaults(
        attempts=3,
        backoff=Backoff(type="exponential", delay_seconds=5, max_delay_seconds=300),
        timeout_seconds=300,
        # PDF layout is CPU-bound; a few at once keeps reports from crowding out other work.
        concurrency=4,
    ),
)
async def generate_report(payload: ReportPayload, job: JobContext) -> ReportResult:
    """Build the report, render it in the chosen format and store it as an artifact."""
    report, rows, truncated = await build_report(payload, job)
    await job.progress(30, f"collected {rows} rows")
    data = await asyncio.to_thread(RENDERERS[payload.format], report)
    await job.progress(80, f"rendered {len(data)} bytes of {payload.format}")
    key = artifact_key("report-generation", job.job_id, f"report.{payload.format}")
    artifact = await get_artifact_store().put(key, data, CONTENT_TYPES[payload.format])
    await job.progress(100, "stored")
    return ReportResult(
        uri=artifact.uri,
        size_bytes=artifact.size_bytes,
        content_type=artifact.content_type,
        format=payload.format,
        rows=rows,
        truncated=truncated,
    )
