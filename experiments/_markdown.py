"""Reading back the Markdown tables that the experiment reports write."""

from __future__ import annotations

__all__ = ["parse_table"]


def parse_table(report_md: str, header: str) -> list[dict[str, str]]:
    """Rows of the table that starts with the line ``header``, as dicts keyed by column name.

    Example:
        >>> text = "| a | b |\\n|---|---|\\n| 1 | 2 |\\n\\nafter"
        >>> parse_table(text, "| a | b |")
        [{'a': '1', 'b': '2'}]
    """
    lines = report_md.splitlines()
    start = lines.index(header)
    keys = [c.strip() for c in header.strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(dict(zip(keys, cells, strict=True)))
    return rows
