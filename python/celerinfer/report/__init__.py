"""Reports of stored runs: :mod:`.content` (what a report says), :mod:`.render` (one
self-contained HTML page and a PDF of it), :mod:`.terminal` (the ASCII view of
``celerinfer show``)."""

from .content import ReportContent, Table, report_content
from .render import html_text, render_plots, write_html, write_pdf
from .terminal import show_text

__all__ = ["ReportContent", "Table", "html_text", "render_plots", "report_content", "show_text", "write_html",
           "write_pdf"]
