"""The reference server's REST API over real HTTP: Bearer auth, JSON errors, snapshots, uploads."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_wire import WireClient

from aios_notebook.server import Simulator
from aios_notebook.server.workload import DEFAULT_START

pytestmark = pytest.mark.timeout(60)

GETS = [
    "/api/workflows/dag-runs", "/api/agents", "/api/agents/content_mind_01", "/api/knowledge/search",
    "/api/analytics/dashboard", "/api/analytics/insights",
]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=4, speed=600, start=DEFAULT_START, warmup=2 * 3600, max_upload_bytes=4096) as server:
        yield server


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(sim.http_url, headers={"Authorization": f"Bearer {sim.token}"}) as session:
        yield session


async def answer(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


def pdf_form(content: bytes = b"%PDF-1.4 tiny", filename: str = "report.pdf",
             content_type: str = "application/pdf") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=filename, content_type=content_type)
    form.add_field("extract_text", "true")
    form.add_field("generate_summary", "false")
    return form


# -- auth and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Token {token}", "Bearer", "bearer  "])
async def test_every_endpoint_wants_the_bearer_token(sim: Simulator, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header.format(token=sim.token)}
    async with aiohttp.ClientSession(sim.http_url, headers=headers) as session:
        for path in [*GETS, "/api/workflows/dag-runs/x", "/api/nothing-here"]:
            async with session.get(path) as response:
                status, body = await answer(response)
                assert status == 401 and body["code"] == "unauthorized" and body["message"]
                assert sim.token not in str(body)
        async with session.post("/api/workflows/upload-pdf", data=pdf_form()) as response:
            assert (await answer(response))[0] == 401


async def test_errors_are_json_with_a_code_and_a_message(http: aiohttp.ClientSession) -> None:
    cases = [
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("DELETE", "/api/agents", 405, "method_not_allowed"),
        ("GET", "/api/workflows/dag-runs/manual__nope", 404, "not_found"),
        ("GET", "/api/agents/nobody", 404, "not_found"),
        ("GET", "/api/knowledge/kb-item-0", 404, "not_found"),
        ("GET", "/api/workflows/dag-runs?limit=0", 400, "invalid_parameter"),
        ("GET", "/api/workflows/dag-runs?offset=-1", 400, "invalid_parameter"),
        ("GET", "/api/analytics/insights?limit=many", 400, "invalid_parameter"),
    ]
    for method, path, expected, code in cases:
        async with http.request(method, path) as response:
            status, body = await answer(response)
            assert (status, body["code"]) == (expected, code), path
            assert isinstance(body["message"], str) and body["message"]


# -- snapshots ------------------------------------------------------------------------------------
async def test_dag_runs_page_filter_and_detail(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get("/api/workflows/dag-runs", params={"limit": "5"}) as response:
        status, page = await answer(response)
    assert status == 200 and len(page["items"]) == 5 and page["total"] > 100
    newest = page["items"][0]
    assert newest["run_id"].startswith("manual__") and newest["dag_id"].endswith("_processing")
    counts = ("completed_steps", "running_steps", "failed_steps", "pending_steps")
    assert all(sum(run[c] for c in counts) == run["total_steps"] for run in page["items"])
    async with http.get("/api/workflows/dag-runs", params={"status": "success", "type": "audio", "limit": "1000"}) as response:
        _, done = await answer(response)
    assert done["items"] and all(r["status"] == "success" and r["type"] == "audio" for r in done["items"])
    async with http.get("/api/workflows/dag-runs", params={"offset": "5", "limit": "5"}) as response:
        _, second = await answer(response)
    assert not {r["run_id"] for r in second["items"]} & {r["run_id"] for r in page["items"]}
    async with http.get(f"/api/workflows/dag-runs/{done['items'][0]['run_id']}") as response:
        _, run = await answer(response)
    assert [s["step_id"] for s in run["steps"]] == ["upload", "transcription", "analysis", "summarization", "indexing"]
    assert all(s["status"] == "success" for s in run["steps"]) and run["result"]["summary"]


async def test_agents_knowledge_dashboard_and_insights_come_from_the_simulated_state(
        sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get("/api/agents") as response:
        _, agents = await answer(response)
    assert agents["total"] == 8 and {a["name"] for a in agents["items"]} >= {"Content Mind", "Web Fetcher"}
    assert all(set(a["performance"]) == {"tasks_completed", "average_processing_time", "success_rate"}
               for a in agents["items"])
    async with http.get("/api/agents/digest_agent_02") as response:
        _, one = await answer(response)
    assert one["agent_id"] == "digest_agent_02" and one["performance"]["tasks_completed"] > 0
    async with http.get("/api/knowledge/search", params={"q": "report", "limit": "3"}) as response:
        _, found = await answer(response)
    assert 0 < len(found["items"]) <= 3 and all("report" in f"{i['title']} {i['summary']}".lower() for i in found["items"])
    async with http.get(f"/api/knowledge/{found['items'][0]['item_id']}") as response:
        _, item = await answer(response)
    assert item["item_id"] == found["items"][0]["item_id"] and item["source_job"].startswith("job-")
    async with http.get("/api/knowledge/search", params={"tags": "finance,legal"}) as response:
        _, tagged = await answer(response)
    assert tagged["items"] and all({"finance", "legal"} & set(i["tags"]) for i in tagged["items"])
    async with http.get("/api/analytics/dashboard") as response:
        _, dashboard = await answer(response)
    assert dashboard["total_processed"] > 100 and 0 <= dashboard["success_rate"] <= 100
    assert dashboard["server_time"] >= dashboard["timestamp"] and dashboard["recent_activity"]
    async with http.get("/api/analytics/insights", params={"type": "trend"}) as response:
        _, insights = await answer(response)
    assert insights["items"] and all(i["type"] == "trend" for i in insights["items"])


# -- uploads --------------------------------------------------------------------------------------
async def test_an_upload_starts_a_job_whose_events_follow_on_the_socket(
        sim: Simulator, http: aiohttp.ClientSession) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["processing_jobs"]})
    await client.sync()
    async with http.post("/api/workflows/upload-pdf", data=pdf_form(filename="Quarterly Numbers.pdf")) as response:
        status, body = await answer(response)
    assert status == 202 and set(body) == {"job_id", "run_id", "status", "message"}
    assert body["status"] == "queued" and body["run_id"].startswith("manual__")
    final = await client.until(lambda m: m["event"] in ("processing_job_completed", "processing_job_failed")
                               and m["data"]["job_id"] == body["job_id"], timeout=30)
    mine = [f for f in client.frames if f["data"].get("job_id") == body["job_id"]]
    assert mine[0]["event"] == "processing_job_status" and mine[0]["data"]["filename"] == "Quarterly Numbers.pdf"
    assert all(f["data"]["run_id"] == body["run_id"] for f in mine) and final in mine


async def test_audio_upload_and_url_submission(http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"ID3 audio", filename="standup.mp3", content_type="audio/mpeg")
    async with http.post("/api/workflows/upload-audio", data=form) as response:
        status, body = await answer(response)
    assert status == 202 and body["job_id"].startswith("job-")
    async with http.post("/api/workflows/from-url", json={"url": "https://example.com/a", "full_content": True}) as response:
        status, body = await answer(response)
    assert status == 202 and body["run_id"].startswith("manual__")
    async with http.post("/api/workflows/from-url", data={"url": "https://example.org/b"}) as response:
        assert (await answer(response))[0] == 202


async def test_uploads_past_the_size_limit_get_413(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/workflows/upload-pdf", data=pdf_form(b"%PDF" + b"x" * 5000)) as response:
        status, body = await answer(response)
    assert (status, body["code"]) == (413, "payload_too_large")
    big = b"%PDF" + b"x" * (200 * 1024)  # declared length far past the limit: refused before reading
    async with http.post("/api/workflows/upload-pdf", data=pdf_form(big)) as response:
        assert (await answer(response))[0] == 413


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/workflows/upload-pdf", {"json": {"file": "x"}}),
        ("/api/workflows/upload-pdf", {"data": "plain"}),
        ("/api/workflows/upload-pdf", {"form": ("notes.txt", "text/plain")}),
        ("/api/workflows/upload-audio", {"form": ("song.pdf", "application/pdf")}),
        ("/api/workflows/from-url", {"data": "https://example.com", "headers": {"Content-Type": "text/plain"}}),
    ],
)
async def test_wrong_content_types_get_415(http: aiohttp.ClientSession, path: str, kwargs: dict) -> None:
    if "form" in kwargs:
        filename, content_type = kwargs.pop("form")
        kwargs["data"] = pdf_form(filename=filename, content_type=content_type)
    async with http.post(path, **kwargs) as response:
        status, body = await answer(response)
    assert (status, body["code"]) == (415, "unsupported_media_type")


async def test_bad_forms_and_urls_get_400(http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("extract_text", "true")
    form.add_field("other", b"x", filename="x.bin", content_type="application/octet-stream")
    cases = [
        ("/api/workflows/upload-pdf", {"data": form}, "missing_file"),
        ("/api/workflows/upload-pdf", {"data": pdf_form(b"")}, "empty_file"),
        ("/api/workflows/from-url", {"json": {"url": "file:///etc/passwd"}}, "invalid_url"),
        ("/api/workflows/from-url", {"json": {"url": 7}}, "invalid_url"),
        ("/api/workflows/from-url", {"json": ["https://example.com"]}, "invalid_json"),
        ("/api/workflows/from-url", {"data": "{nope", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
    ]
    for path, kwargs, code in cases:
        async with http.post(path, **kwargs) as response:
            status, body = await answer(response)
        assert (status, body["code"]) == (400, code)


async def test_the_client_filename_is_never_a_path_and_nothing_is_written(
        http: aiohttp.ClientSession, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    marker = f"aios-{uuid.uuid4().hex}"
    before = set(os.listdir(tempfile.gettempdir()))
    for name in (f"../../{marker}.pdf", f"/tmp/{marker}.pdf", f"..\\..\\{marker}.pdf"):
        async with http.post("/api/workflows/upload-pdf", data=pdf_form(filename=name)) as response:
            status, body = await answer(response)
        assert status == 202
        async with http.get(f"/api/workflows/dag-runs/{body['run_id']}") as response:
            _, run = await answer(response)
        assert run["filename"] == f"{marker}.pdf"
    assert list(tmp_path.iterdir()) == []
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - before if marker in name]
