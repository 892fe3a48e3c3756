"""Reports: execute a notebook with parameters and export a self-contained HTML file.

``render_report("notebooks/04_weekly_report.ipynb", "report.html", {"period": "7d"})``:

1. papermill injects the parameters after the cell tagged ``parameters`` and runs every cell in a
   fresh kernel, with a tqdm progress bar (one step per cell);
2. every secret is masked in the executed notebook: the values of ``AIOS_TOKEN`` (and of other
   ``*_TOKEN`` / ``*_SECRET`` / ``*_PASSWORD`` variables of this process and of the kernel) plus
   any given explicitly;
3. Plotly figures are turned into static HTML: plotly's kernel renderer emits
   ``application/vnd.plotly.v1+json``, which nbconvert cannot represent, so each one becomes a
   ``<div>`` drawn by plotly.js, and plotly.js itself is inlined once in the page head;
4. nbconvert's ``lab`` template writes the page, minus everything it would fetch from a CDN
   (require.js, MathJax, mermaid, the widget manager): the file opens without network or kernel.

A failing cell raises :class:`~aios_notebook.exceptions.ReportError` naming the cell (its number,
execution count and first line); the HTML of what ran, error included, is left beside the
requested output as ``<name>.partial.html``.

An output ending in ``.pdf`` is that same page printed by headless Chromium (:func:`html_to_pdf`),
once its figures have drawn. The kernel talks to papermill over IPC sockets (files readable by
this user only), not TCP: nothing else on the machine can listen in, and the kernel has no
"running over TCP without encryption" warning to print.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .exceptions import ConfigurationError, ReportError

__all__ = [
    "export_html",
    "find_chromium",
    "find_secrets",
    "html_to_pdf",
    "notebook_parameters",
    "parse_parameters",
    "redact_notebook",
    "render_report",
    "run_report",
    "staticize_figures",
]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_SECRET_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY)$", re.IGNORECASE)
_MIN_SECRET = 4  # shorter values would mask ordinary text (and are not credentials worth the name)
_MASK = "***"
_PROBE_TAG = "aios-report-secret-probe"
_SETUP_TAG = "aios-report-setup"
# run in the kernel before the first cell: the kit's views show their static form (a report has
# no kernel to drive live widgets)
_SETUP = 'import os as _os\n_os.environ["AIOS_VIEWS_DISPLAY"] = "static"\ndel _os'

# the lab template without anything fetched from the network; plotly.js inlined once instead
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{%- if resources.aios_plotly_js %}
<script type="text/javascript">{{ resources.aios_plotly_js }}</script>
{%- endif %}
{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""

# run in the kernel after the last cell: which secrets does the kernel know that we do not?
# (a notebook may set AIOS_TOKEN itself; clients and embedded servers hold tokens)
_PROBE = r"""
def _aios_report_probe():
    import gc, json, os, re
    found = {v for k, v in os.environ.items() if re.search(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY)$", k, re.I) and v}
    try:
        for obj in gc.get_objects():
            module = type(obj).__dict__.get("__module__") if not isinstance(obj, type) else None
            if isinstance(module, str) and module.startswith("aios_notebook."):
                for name in ("token", "_token", "tokens"):
                    try:
                        value = getattr(obj, name, None)
                    except Exception:
                        value = None
                    values = value if isinstance(value, (list, tuple)) else [value]
                    found.update(v for v in values if isinstance(v, str) and v)
    except Exception:
        pass
    print(json.dumps(sorted(found)))
_aios_report_probe(); del _aios_report_probe
"""


# ----------------------------------------------------------------------------------------------
# parameters
def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """``["period=7d", "days=7", "live=true"]`` -> ``{"period": "7d", "days": 7, "live": True}``.

    Values are read as JSON or Python literals (numbers, true/false/True/False, null/None, lists,
    quoted strings) when they parse, and are strings otherwise.

    Raises:
        ConfigurationError: an item without ``=`` or with an invalid name.
    """
    parameters: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigurationError(f"a parameter is NAME=VALUE, got {item!r}")
        parameters[name] = _parse_value(raw)
    return parameters


def _parse_value(raw: str) -> Any:
    text = raw.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
    return raw


def notebook_parameters(notebook: str | os.PathLike[str] | Any) -> dict[str, str]:
    """The parameters a notebook declares (its cell tagged ``parameters``): name -> default (source text)."""
    import papermill

    nb = _read_notebook(notebook)
    if _parameters_cell(nb) is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="aios-report-") as folder:
        path = Path(folder) / "notebook.ipynb"
        _write_notebook(nb, path)
        found = papermill.inspect_notebook(str(path))
    return {name: str(info.get("default")) for name, info in found.items()}


# ----------------------------------------------------------------------------------------------
# secrets
def find_secrets(extra: Iterable[str | None] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The values to mask: ``extra`` plus every ``*_TOKEN``/``*_SECRET``/``*_PASSWORD`` variable.

    Values shorter than 4 characters are ignored (masking them would garble ordinary text).
    Longest first, so that a secret containing another is masked whole.
    """
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_ENV.search(k) and v}
    values.update(v for v in extra if v)
    return sorted((v for v in values if len(v) >= _MIN_SECRET), key=lambda v: (-len(v), v))


def _mask(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, _MASK)
        return value
    if isinstance(value, list):
        return [_mask(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: (v if str(k).startswith("image/") and k != "image/svg+xml" else _mask(v, secrets))
                for k, v in value.items()}
    return value


def redact_notebook(nb: Any, secrets: Sequence[str]) -> Any:
    """A copy of ``nb`` with every secret masked: sources, outputs, tracebacks and metadata."""
    import nbformat

    if not secrets:
        return copy.deepcopy(nb)
    return nbformat.from_dict(_mask(json.loads(json.dumps(nb)), secrets))


# ----------------------------------------------------------------------------------------------
# figures and HTML
def staticize_figures(nb: Any) -> int:
    """Turn Plotly outputs into static HTML (in place); returns how many figures were converted.

    A live widget (a FigureWidget, a progress bar) cannot be drawn without a kernel: its output
    becomes a short note instead of an empty placeholder.
    """
    import plotly.io as pio

    converted = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data:
                figure = data.pop(PLOTLY_MIME)
                config = figure.get("config") if isinstance(figure, dict) else None
                data["text/html"] = pio.to_html(
                    figure, include_plotlyjs=False, full_html=False, validate=False,
                    config=config or {"displaylogo": False},
                )
                data.pop("text/plain", None)
                converted += 1
            elif WIDGET_MIME in data:
                data.pop(WIDGET_MIME)
                if "text/html" not in data:  # the kit's views carry a static fallback: kept
                    data.pop("text/plain", None)
                    data["text/html"] = '<div class="aios-live-widget"><em>(a live widget: not part of the static report)</em></div>'
    return converted


def _draws_figures(nb: Any) -> bool:
    """Whether any HTML output calls plotly.js (static views, figures written as HTML)."""
    return any(
        "Plotly.newPlot" in str(output.get("data", {}).get("text/html", ""))
        for cell in nb.cells for output in cell.get("outputs", [])
    )


def export_html(nb: Any, *, show_code: bool = False, title: str | None = None) -> str:
    """An executed notebook as one self-contained HTML page (no CDN, Plotly inlined)."""
    import jinja2
    import plotly.offline
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    figures = staticize_figures(nb)
    if title:
        nb.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"aios_report.html.j2": _TEMPLATE})],
        template_file="aios_report.html.j2",
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=True,
        embed_images=True,
    )
    # plotly.js once, in the head, before any figure's script runs
    resources = {"aios_plotly_js": plotly.offline.get_plotlyjs() if figures or _draws_figures(nb) else ""}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


# ----------------------------------------------------------------------------------------------
# PDF
#: the flags this machine's headless Chromium needs (tests/chromium.py launches it the same way):
#: without the background-networking ones its own connections are refused by the closed network
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The headless browser that prints PDF reports: ``$AIOS_CHROMIUM``, else chromium on PATH."""
    given = os.environ.get("AIOS_CHROMIUM")
    if given:
        return shutil.which(given) or (given if Path(given).is_file() else None)
    return next((found for name in _CHROMIUM_NAMES if (found := shutil.which(name))), None)


def html_to_pdf(html: str | os.PathLike[str], pdf: str | os.PathLike[str], *, timeout: float = 120.0) -> Path:
    """Print an HTML file to PDF with headless Chromium, after its scripts (the figures) have run.

    Raises:
        ConfigurationError: no Chromium was found (``$AIOS_CHROMIUM`` or ``chromium`` on PATH).
        ReportError: Chromium failed or wrote nothing.
    """
    browser = find_chromium()
    if browser is None:
        raise _no_chromium()
    source, target = Path(html).resolve(), Path(pdf).resolve()
    with tempfile.TemporaryDirectory(prefix="aios-pdf-") as profile:
        command = [
            browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
            # virtual time runs every script and timer of the page before printing: the figures draw
            "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw",
            "--no-pdf-header-footer", f"--print-to-pdf={target}", source.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print {target.name} within {timeout:g} s") from None
    if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no message")
        raise ReportError(f"Chromium could not print the PDF (exit {done.returncode}): {last[:200]}")
    return target


def _no_chromium() -> ConfigurationError:
    return ConfigurationError(
        "a PDF report needs a headless Chromium: install it (e.g. apt-get install chromium) "
        "or name it in AIOS_CHROMIUM; an output ending in .html needs none")


#: run in the report's kernel before any cell: its tornado loggers say nothing below CRITICAL
_QUIET_TORNADO = ('--IPKernelApp.exec_lines=import logging as _aios_logging; '
                  '_aios_logging.getLogger("tornado").setLevel(_aios_logging.CRITICAL); del _aios_logging')


def _ipc_config() -> Any:
    """papermill's kernel on IPC sockets, not TCP (see the module docstring)."""
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    return config


# ----------------------------------------------------------------------------------------------
# running
def render_report(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    secrets: Iterable[str | None] = (),
    show_code: bool = False,
    progress: bool = True,
    timeout: float | None = 600,
    kernel_name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Path:
    """Execute ``notebook`` with ``parameters`` and write the report to ``output``.

    Args:
        notebook: the ``.ipynb`` to run (left untouched).
        output: the file to write: HTML, or PDF when it ends in ``.pdf`` (printed by headless
            Chromium, see :func:`html_to_pdf`).
        parameters: values for the names of its cell tagged ``parameters``.
        secrets: more values to mask (the token variables of the environment always are).
        show_code: include the code cells (by default only their outputs are shown).
        progress: show a progress bar (tqdm, on stderr) while cells execute.
        timeout: seconds a single cell may run (None: no limit).
        kernel_name: the kernel to use (default: the notebook's).
        cwd: working folder of the kernel (default: the current one, so that relative paths given
            as parameters mean what they mean on the command line).

    Returns:
        The path of the written report.

    Raises:
        ReportError: a cell failed (``cell`` is its 1-based number in the notebook, ``partial``
            the HTML of what ran, written beside ``output``).
        ConfigurationError: the notebook is missing or unreadable, or a parameter is unknown.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(notebook)
    output = Path(output)
    pdf = output.suffix.lower() == ".pdf"
    nb = _read_notebook(source)
    parameters = dict(parameters or {})
    _check_parameters(nb, source, parameters)
    if pdf and find_chromium() is None:  # said before a kernel runs for minutes to no avail
        raise _no_chromium()
    original_ids = [cell.get("id") for cell in nb.cells]
    _add_probe(nb)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial_path = output.with_name(output.stem + ".partial.html")
    with tempfile.TemporaryDirectory(prefix="aios-report-") as folder:
        executed_path = Path(folder) / source.name
        failure: PapermillExecutionError | None = None
        try:
            papermill.execute_notebook(
                _write_notebook(nb, Path(folder) / ("input-" + source.name)),
                str(executed_path),
                parameters=parameters or None,
                progress_bar=progress,
                request_save_on_cell_execute=False,
                kernel_name=kernel_name,
                cwd=str(cwd) if cwd is not None else None,
                execution_timeout=timeout,
                config=_ipc_config(),
                # the kernel's own log lines are not the reader's business: at shutdown jupyter_client
                # interrupts it, which it logs as "KeyboardInterrupt caught in kernel". A cell's
                # errors still reach the report and ReportError, the kernel dying still fails the run
                # and at shutdown its control thread can race the closing of its sockets, which
                # tornado logs as an "Uncaught exception in ZMQStream callback" (seen once in 8 runs)
                extra_arguments=["--IPKernelApp.log_level=CRITICAL", _QUIET_TORNADO],
            )
        except PapermillExecutionError as exc:
            failure = exc
        executed = _read_notebook(executed_path)
    kernel_secrets = _take_probe(executed)
    all_secrets = find_secrets([*secrets, *kernel_secrets])
    clean = redact_notebook(executed, all_secrets)
    html = export_html(clean, show_code=show_code, title=source.stem.replace("_", " "))
    html = _mask(html, all_secrets)  # belt and braces: nothing in the page may hold a secret
    if failure is None:
        if pdf:
            with tempfile.TemporaryDirectory(prefix="aios-report-") as folder:
                page = Path(folder) / (output.stem + ".html")
                page.write_text(html, encoding="utf-8")
                html_to_pdf(page, output, timeout=timeout or 120.0)
        else:
            output.write_text(html, encoding="utf-8")
        if partial_path.exists():
            partial_path.unlink()  # from an earlier failed run: no longer true
        return output
    partial_path.write_text(html, encoding="utf-8")
    raise _report_error(failure, executed, original_ids, source, partial_path, all_secrets)


def _report_error(failure: Any, executed: Any, original_ids: list[Any], source: Path,
                  partial: Path, secrets: Sequence[str]) -> ReportError:
    # papermill's cell_index does not count the banner cells it inserts: find the cell by its error
    failed = next(
        (cell for cell in executed.cells
         if any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
        None,
    )
    cell_id = failed.get("id") if failed is not None else None
    number = original_ids.index(cell_id) + 1 if cell_id in original_ids else None
    first_line = next((line for line in str(failure.source).splitlines() if line.strip()), "")
    where = f"cell {number}" if number is not None else "the injected parameters cell"
    if failure.exec_count is not None:
        where += f" (In [{failure.exec_count}])"
    message = (
        f"{source}: {where} failed: {failure.ename}: {failure.evalue}\n"
        f"    {first_line.strip()[:100]}\n"
        f"the partial report is in {partial}"
    )
    return ReportError(_mask(message, secrets), cell=number, partial=str(partial))


def _check_parameters(nb: Any, source: Path, parameters: Mapping[str, Any]) -> None:
    if not parameters:
        return
    if _parameters_cell(nb) is None:
        raise ConfigurationError(
            f"{source} has no cell tagged 'parameters': it takes no parameters (got {sorted(parameters)})"
        )
    known = notebook_parameters(nb)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown parameter(s) {', '.join(unknown)}; it takes: {', '.join(sorted(known)) or 'none'}"
        )


def _parameters_cell(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def _add_probe(nb: Any) -> None:
    import nbformat

    setup = nbformat.v4.new_code_cell(_SETUP)
    setup.metadata["tags"] = [_SETUP_TAG]
    nb.cells.insert(0, setup)
    probe = nbformat.v4.new_code_cell(_PROBE.strip())
    probe.metadata["tags"] = [_PROBE_TAG]
    nb.cells.append(probe)


def _take_probe(nb: Any) -> list[str]:
    """Remove the cells added for the run; return the secrets the probe printed (none if it did not run)."""
    found: list[str] = []
    kept = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if _SETUP_TAG in tags:
            continue
        if _PROBE_TAG in tags:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    with contextlib.suppress(ValueError):
                        found.extend(v for v in json.loads(output.get("text", "")) if isinstance(v, str))
            continue
        kept.append(cell)
    nb.cells = kept
    return found


def _read_notebook(notebook: str | os.PathLike[str] | Any) -> Any:
    import nbformat

    if not isinstance(notebook, (str, os.PathLike)):
        return copy.deepcopy(notebook)
    path = Path(notebook)
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such notebook") from None
    except (OSError, ValueError, nbformat.reader.NotJSONError) as exc:
        raise ConfigurationError(f"{path}: not a readable notebook: {exc}") from None


def _write_notebook(nb: Any, path: Path) -> str:
    import nbformat

    nbformat.write(nb, path)
    return str(path)


def run_report(args: Any) -> int:
    """``aios-notebook report NOTEBOOK -o FILE.html|FILE.pdf [-p NAME=VALUE ...]``: returns the exit code."""
    import sys

    try:
        parameters = parse_parameters(args.parameter)
        path = render_report(args.notebook, args.output, parameters, show_code=args.show_code,
                             progress=not args.no_progress, timeout=args.timeout)
    except ReportError as exc:
        print(f"aios-notebook report: {exc}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:
        print(f"aios-notebook report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0
