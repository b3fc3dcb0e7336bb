"""The live terminal status of a running pipeline (a rich renderable)."""

from rich.table import Table

from apistream.pipeline.progress import LiveStatus


def render_status(status: LiveStatus) -> Table:
    """Per query: batches, rows/s, watermark, state rows; then the data-quality account."""
    queries, totals = status.snapshot()
    table = Table(title="apistream", title_justify="left", expand=False)
    for col in (
        "query",
        "batches",
        "input rows",
        "input/s",
        "processed/s",
        "watermark",
        "state rows",
    ):
        table.add_column(col, justify="left" if col in ("query", "watermark") else "right")
    if not queries:
        table.add_row("waiting for the first batch…", "", "", "", "", "", "")
    for name, q in sorted(queries.items()):
        table.add_row(
            name,
            f"{q.batches:,}",
            f"{q.input_rows:,}",
            f"{q.input_rate:,.0f}",
            f"{q.processed_rate:,.0f}",
            (q.watermark or "-")[:19],
            f"{q.state_rows:,}",
        )
    table.caption = (
        f"input {totals['input']:,} = valid {totals['valid']:,} + quarantined "
        f"{totals['quarantined']:,} + duplicates {totals['duplicates']:,} + late "
        f"{totals['late']:,}"
    )
    return table
