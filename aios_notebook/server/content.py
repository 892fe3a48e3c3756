"""What the simulated documents say: filenames, titles, results, task descriptions.

Pure functions of a seeded ``random.Random`` and the catalog, so the workload stays deterministic.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

from .catalog import TOPICS, Topic

__all__ = [
    "Document",
    "agent_summary",
    "clean_filename",
    "document_for_upload",
    "job_result",
    "new_document",
    "task_description",
]

_SITES = ("news.example.com", "blog.example.org", "research.example.net", "docs.example.io")
_AUDIO_EXT = (".mp3", ".m4a", ".wav")
_KIND_WORDS = {"pdf": "PDF document", "audio": "audio recording", "url": "web page"}


@dataclass(frozen=True, slots=True)
class Document:
    """The thing a job processes: its filename (a URL for url jobs), title and topic."""

    filename: str
    title: str
    topic: Topic


def _fill(template: str, rng: random.Random) -> str:
    return template.format(q=rng.randint(1, 4), y=rng.choice((2024, 2025, 2026)))


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def new_document(job_type: str, rng: random.Random) -> Document:
    """A fresh document of ``job_type`` about a random topic."""
    topic = rng.choice(TOPICS)
    title = _fill(rng.choice(topic.titles), rng)
    slug = _slug(title)
    if job_type == "pdf":
        filename = f"{slug}.pdf"
    elif job_type == "audio":
        filename = f"{slug}{rng.choice(_AUDIO_EXT)}"
    else:
        filename = f"https://{rng.choice(_SITES)}/{slug.replace('_', '-')}"
    return Document(filename, title, topic)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(name: str, limit: int = 200) -> str:
    """A client's filename as a display string only: the last path part, no control characters.

    The reference server never uses it as a path (nothing is written to disk); this only keeps
    events readable when a client sends ``../../etc/passwd`` or a name with newlines.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = _UNSAFE.sub("", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        name = "upload"
    return name[:limit]


def document_for_upload(job_type: str, display_name: str, rng: random.Random) -> Document:
    """The document behind a REST upload: the client's (cleaned) name, a topic drawn at random."""
    topic = rng.choice(TOPICS)
    stem = display_name.rsplit("/", 1)[-1].rsplit(".", 1)[0] or display_name
    title = re.sub(r"[_\-]+", " ", stem).strip().title()[:120] or "Uploaded Document"
    return Document(display_name, title, topic)


def task_description(step_id: str, job_type: str, document: Document) -> str:
    """``current_task`` of an agent working on ``step_id`` of a job."""
    kind = _KIND_WORDS[job_type]
    name = document.filename
    if step_id == "text_extraction":
        return f"Extracting text from {kind} '{name}'"
    if step_id == "transcription":
        return f"Transcribing {kind} '{name}'"
    if step_id == "fetch":
        return f"Fetching {name}"
    if step_id == "analysis":
        return f"Analyzing {kind} '{name}' for key insights"
    if step_id == "summarization":
        return f"Summarizing {kind} '{name}'"
    return f"Indexing '{document.title}' into the knowledge base"


def job_result(document: Document, rng: random.Random) -> dict[str, object]:
    """``processing_job_completed.result``: extracted text, summary, entities, insights."""
    topic = document.topic
    entities = [_fill(e, rng) for e in rng.sample(topic.entities, k=min(3, len(topic.entities)))]
    finding = topic.finding
    summary = f"{document.title}: {finding}."
    text = (
        f"{document.title}. This {topic.key} document covers {', '.join(entities)}. "
        f"Main finding: {finding}. Further sections give figures, owners and next steps."
    )
    insights = [
        f"Key finding: {finding}",
        f"Mentions {entities[0]} {rng.randint(2, 14)} times",
    ]
    return {"extracted_text": text, "summary": summary, "entities": entities, "insights": insights}


def agent_summary(step_id: str, document: Document) -> str:
    """``agent_task_completed.result.summary``."""
    if step_id in ("text_extraction", "transcription", "fetch"):
        return f"Extracted {document.title}"
    if step_id == "analysis":
        return f"Found key themes in {document.title}: {document.topic.finding}"
    if step_id == "summarization":
        return f"Generated summary of {document.title}"
    return f"Indexed {document.title} under {', '.join(document.topic.tags[:2])}"

