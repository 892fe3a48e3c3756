"""The fixed cast of the simulated AIOS v2 deployment: workflows, agents, topics, error texts.

Everything here is static data: the workload (``workload.py``) draws from it with its own seeded
random generator, so the same seed always picks the same documents, agents and failures.

Workflows (one Airflow-style DAG per job type; ``mean_s`` is the mean step duration in simulated
seconds, ``None`` agent kind means the platform itself does the step):

=====  ==================  ==========================================================  =========
type   dag_id              steps (agent kind)                                           mean job
=====  ==================  ==========================================================  =========
pdf    pdf_processing      upload, text_extraction (extraction), analysis, summarization,  ~2.6 min
                           indexing
audio  audio_processing    upload, transcription (transcription), analysis, summarization, ~4.4 min
                           indexing
url    url_processing      fetch (ingestion), analysis, summarization, indexing          ~2.1 min
=====  ==================  ==========================================================  =========
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGENTS",
    "JOB_TYPE_WEIGHTS",
    "STEP_ERRORS",
    "TOPICS",
    "WORKFLOWS",
    "AgentSpec",
    "StepSpec",
    "Topic",
    "Workflow",
]


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a workflow.

    Attributes:
        step_id: the DAG task id, also the job's ``current_step``.
        agent_kind: which agent pool runs it (None: the platform, no agent events).
        mean_s: mean duration in simulated seconds (durations are log-normal around it).
        task_type: ``agent_task_completed.task_type``.
        verb: how an agent describes the task in ``current_task``.
        failure_weight: relative share of job failures that happen at this step.
    """

    step_id: str
    agent_kind: str | None
    mean_s: float
    task_type: str
    verb: str
    failure_weight: float


@dataclass(frozen=True, slots=True)
class Workflow:
    """A job type and its DAG."""

    job_type: str
    dag_id: str
    steps: tuple[StepSpec, ...]

    @property
    def mean_total_s(self) -> float:
        return sum(step.mean_s for step in self.steps)


_UPLOAD_PDF = StepSpec("upload", None, 4.0, "file_upload", "Receiving", 0.3)
_UPLOAD_AUDIO = StepSpec("upload", None, 10.0, "file_upload", "Receiving", 0.3)
_ANALYSIS = StepSpec("analysis", "analysis", 55.0, "content_analysis", "Analyzing", 1.5)
_SUMMARY = StepSpec("summarization", "summarization", 38.0, "text_summarization", "Summarizing", 1.2)
_INDEXING = StepSpec("indexing", "indexing", 9.0, "knowledge_indexing", "Indexing", 0.4)

WORKFLOWS: dict[str, Workflow] = {
    "pdf": Workflow(
        "pdf",
        "pdf_processing",
        (
            _UPLOAD_PDF,
            StepSpec("text_extraction", "extraction", 48.0, "text_extraction", "Extracting text from", 1.6),
            _ANALYSIS,
            _SUMMARY,
            _INDEXING,
        ),
    ),
    "audio": Workflow(
        "audio",
        "audio_processing",
        (
            _UPLOAD_AUDIO,
            StepSpec("transcription", "transcription", 150.0, "audio_transcription", "Transcribing", 1.6),
            _ANALYSIS,
            _SUMMARY,
            _INDEXING,
        ),
    ),
    "url": Workflow(
        "url",
        "url_processing",
        (
            StepSpec("fetch", "ingestion", 22.0, "web_fetch", "Fetching", 1.4),
            _ANALYSIS,
            _SUMMARY,
            _INDEXING,
        ),
    ),
}

#: share of arrivals per job type
JOB_TYPE_WEIGHTS: dict[str, float] = {"pdf": 0.55, "audio": 0.2, "url": 0.25}


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent of the pool: ``kind`` is the step pool it serves, ``type`` what the API reports."""

    agent_id: str
    name: str
    type: str
    kind: str


AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec("content_mind_01", "Content Mind", "analysis", "analysis"),
    AgentSpec("context_mind_01", "Context Mind", "analysis", "analysis"),
    AgentSpec("digest_agent_02", "Digest", "summarization", "summarization"),
    AgentSpec("summary_agent_03", "Summary", "summarization", "summarization"),
    AgentSpec("web_fetcher_04", "Web Fetcher", "ingestion", "ingestion"),
    AgentSpec("transcriber_05", "Transcriber", "transcription", "transcription"),
    AgentSpec("text_extractor_06", "Text Extractor", "extraction", "extraction"),
    AgentSpec("indexer_07", "Indexer", "indexing", "indexing"),
)


@dataclass(frozen=True, slots=True)
class Topic:
    """A subject documents are about: titles, tags and entities for results and knowledge items."""

    key: str
    titles: tuple[str, ...]
    tags: tuple[str, ...]
    entities: tuple[str, ...]
    finding: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        "finance",
        ("Q{q} Financial Analysis Report", "Annual Budget Review {y}", "Cash Flow Forecast Q{q}"),
        ("finance", "quarterly", "analysis", "budget"),
        ("Acme Corp", "EBITDA", "Operating margin", "CFO office", "FY{y}"),
        "operating costs rose faster than revenue in the quarter",
    ),
    Topic(
        "legal",
        ("Master Services Agreement Review", "Data Processing Addendum", "Vendor Contract Renewal"),
        ("legal", "contracts", "compliance"),
        ("Northwind Ltd", "GDPR", "Liability cap", "Governing law"),
        "the liability cap is below the company standard",
    ),
    Topic(
        "research",
        ("Battery Chemistry Literature Review", "Solid-State Electrolyte Study", "Materials Test Results"),
        ("research", "batteries", "materials"),
        ("Lithium iron phosphate", "Solid electrolyte", "Cycle life", "Fraunhofer ISE"),
        "cycle life improves by about a third with the new electrolyte",
    ),
    Topic(
        "product",
        ("Product Roadmap Planning Session", "Customer Interview Notes", "Feature Prioritization Workshop"),
        ("product", "roadmap", "customers"),
        ("Mobile app", "Onboarding flow", "Enterprise tier", "Q{q} release"),
        "onboarding friction is the most cited customer complaint",
    ),
    Topic(
        "operations",
        ("Supply Chain Risk Assessment", "Warehouse Throughput Report", "Logistics Partner Review"),
        ("operations", "supply-chain", "risk"),
        ("Rotterdam hub", "Lead time", "Tier-2 supplier", "Safety stock"),
        "two tier-2 suppliers account for most late deliveries",
    ),
    Topic(
        "security",
        ("Incident Postmortem: API Outage", "Penetration Test Findings", "Access Review Summary"),
        ("security", "incident", "infrastructure"),
        ("API gateway", "TLS certificate", "On-call rotation", "CVE-{y}-1123"),
        "an expired certificate caused the outage",
    ),
    Topic(
        "marketing",
        ("Competitor Pricing Analysis", "Campaign Performance Review", "Brand Survey Results"),
        ("marketing", "pricing", "competitors"),
        ("Globex", "Initech", "Price elasticity", "Paid search"),
        "competitors cut entry-level prices by around ten percent",
    ),
    Topic(
        "hr",
        ("Employee Engagement Survey Results", "Hiring Pipeline Review", "Remote Work Policy Draft"),
        ("hr", "people", "policy"),
        ("Engineering org", "Attrition", "Hybrid schedule", "Time to hire"),
        "engagement is lowest in teams with frequent reorganisations",
    ),
    Topic(
        "healthcare",
        ("Clinical Trial Interim Summary", "Patient Outcomes Dashboard Notes", "Care Pathway Audit"),
        ("healthcare", "clinical", "outcomes"),
        ("Phase II trial", "Primary endpoint", "Adverse events", "St. Mary's"),
        "the primary endpoint is on track at the interim read-out",
    ),
    Topic(
        "energy",
        ("Grid Capacity Planning Memo", "Wind Farm Output Report", "Energy Procurement Strategy"),
        ("energy", "grid", "procurement"),
        ("North Sea array", "Capacity factor", "PPA", "Peak demand"),
        "a long-term PPA would hedge most of the price exposure",
    ),
)

#: per step id: (error text, error_type, retryable). Chosen at random when a step fails.
STEP_ERRORS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "upload": (
        ("Upload interrupted: connection reset by peer", "network_error", True),
        ("File exceeds the configured size limit", "validation_error", False),
    ),
    "text_extraction": (
        ("Failed to extract text: Invalid PDF format", "validation_error", False),
        ("Failed to extract text: OCR engine timed out", "timeout_error", True),
        ("Failed to extract text: document is password protected", "validation_error", False),
    ),
    "transcription": (
        ("Transcription failed: unsupported audio codec", "validation_error", False),
        ("Transcription service returned 503 Service Unavailable", "upstream_error", True),
    ),
    "fetch": (
        ("Failed to fetch URL: 404 Not Found", "fetch_error", False),
        ("Failed to fetch URL: connection timed out", "timeout_error", True),
        ("Failed to fetch URL: blocked by robots.txt", "fetch_error", False),
    ),
    "analysis": (
        ("Connection timeout to language model", "timeout_error", True),
        ("Language model returned an empty response", "model_error", True),
        ("Context window exceeded while analysing the document", "model_error", False),
    ),
    "summarization": (
        ("Connection timeout to language model", "timeout_error", True),
        ("Rate limit exceeded by the language model provider (429)", "rate_limit_error", True),
    ),
    "indexing": (
        ("Vector index write failed: shard unavailable", "storage_error", True),
    ),
}
