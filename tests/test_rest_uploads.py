"""Uploads: every bad input fails before any request; a large file streams in bounded memory."""

from __future__ import annotations

import hashlib
import os
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from aios_notebook.exceptions import APIError, UploadError
from aios_notebook.rest import RestClient, prepare_upload, prepare_url, submit_url, upload

pytestmark = pytest.mark.timeout(60)

TOKEN = "upload-token-never-shown"


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"x" * 1000)
    return path


class Receiver:
    """An upload endpoint on 127.0.0.1 that streams each part into a hash, never holding a file."""

    def __init__(self) -> None:
        self.requests = 0
        self.parts: dict[str, dict[str, object]] = {}
        self.json: list[object] = []
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def receive(self, request: web.Request) -> web.Response:
        self.requests += 1
        reader = await request.multipart()
        async for part in reader:
            digest, size = hashlib.sha256(), 0
            while chunk := await part.read_chunk(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
            self.parts[part.name or ""] = {"sha256": digest.hexdigest(), "size": size,
                                           "filename": part.filename,
                                           "content_type": part.headers.get("Content-Type")}
        return web.json_response({"job_id": "job-1", "run_id": "run-1", "status": "queued", "message": "ok"})

    async def from_url(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.json.append(await request.json())
        return web.json_response({"run_id": "run-2", "status": "queued", "message": "fetching"})

    async def no_run_id(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "queued"})

    async def start(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_post("/api/workflows/upload-pdf", self.receive)
        app.router.add_post("/api/workflows/upload-audio", self.receive)
        app.router.add_post("/api/workflows/from-url", self.from_url)
        app.router.add_post("/api/broken/upload-pdf", self.no_run_id)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def remove(path: Path) -> None:
    path.unlink()


# -- bad input: all before any request -------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "report.pdf"
    with pytest.raises(UploadError, match=rf"cannot upload {missing}: no such file"):
        prepare_upload(missing)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match="not a regular file"):
        prepare_upload(tmp_path)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_names_the_path(pdf: Path) -> None:
    pdf.chmod(0)
    try:
        with pytest.raises(UploadError, match=rf"cannot upload {pdf}: cannot read it"):
            prepare_upload(pdf)
    finally:
        pdf.chmod(0o600)


def test_unreadable_file_as_root_is_still_caught(tmp_path: Path) -> None:
    # root can read a chmod-0 file; a dangling symlink is unreadable for everyone
    link = tmp_path / "gone.pdf"
    link.symlink_to(tmp_path / "deleted.pdf")
    with pytest.raises(UploadError, match=rf"cannot upload {link}: no such file"):
        prepare_upload(link)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.touch()
    with pytest.raises(UploadError, match="the file is empty"):
        prepare_upload(empty)


@pytest.mark.parametrize("name", ["notes.docx", "README"])
def test_unknown_extension_names_the_accepted_ones(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"data")
    with pytest.raises(UploadError) as caught:
        prepare_upload(path)
    message = str(caught.value)
    assert str(path) in message and "kind='pdf'" in message
    for ext in (".pdf", ".mp3", ".wav", ".m4a"):
        assert ext in message


def test_kind_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "scan.bin"
    path.write_bytes(b"%PDF")
    prepared = prepare_upload(path, kind="pdf", extract_text=True, generate_summary=False)
    assert (prepared.kind, prepared.endpoint) == ("pdf", "/api/workflows/upload-pdf")
    assert prepared.fields == (("extract_text", "true"), ("generate_summary", "false"))
    assert prepared.content_type == "application/pdf"


def test_audio_from_extension(tmp_path: Path) -> None:
    path = tmp_path / "Call.M4A"
    path.write_bytes(b"\x00" * 10)
    prepared = prepare_upload(path, transcribe=True)
    assert (prepared.kind, prepared.endpoint, prepared.content_type) == (
        "audio", "/api/workflows/upload-audio", "audio/mp4")


def test_unknown_kind(pdf: Path) -> None:
    with pytest.raises(UploadError, match=r"unknown kind 'video'.*accepted kinds are pdf, audio"):
        prepare_upload(pdf, kind="video")


def test_option_of_another_endpoint(pdf: Path) -> None:
    with pytest.raises(UploadError, match=r"a pdf upload does not take option.*transcribe.*accepted: extract_text, generate_summary"):
        prepare_upload(pdf, transcribe=True)


def test_option_value_must_be_simple(pdf: Path) -> None:
    with pytest.raises(UploadError, match=r"option extract_text=\[1\]"):
        prepare_upload(pdf, extract_text=[1])


@pytest.mark.parametrize("url", ["", "ftp://example.com/x", "example.com/page", "https://", None])
def test_bad_urls(url: object) -> None:
    with pytest.raises(UploadError, match="submit_url needs an http"):
        prepare_url(url)  # type: ignore[arg-type]


def test_url_options_are_checked() -> None:
    with pytest.raises(UploadError, match=r"submit_url does not take option.*extract_text"):
        prepare_url("https://example.com/a", extract_text=True)
    assert prepare_url(" https://example.com/a ", full_content=True).body == {
        "url": "https://example.com/a", "full_content": True}


# -- the requests --------------------------------------------------------------------------------


async def test_upload_sends_file_fields_and_answers(receiver: Receiver, pdf: Path) -> None:
    async with RestClient(receiver.url, TOKEN) as rest:
        result = await upload(rest, prepare_upload(pdf, extract_text=True))
    assert (result.job_id, result.run_id, result.status, result.kind, result.source) == (
        "job-1", "run-1", "queued", "pdf", "report.pdf")
    part = receiver.parts["file"]
    assert part["sha256"] == sha256(pdf)
    assert (part["filename"], part["content_type"]) == ("report.pdf", "application/pdf")
    assert "extract_text" in receiver.parts


async def test_submit_url_posts_json(receiver: Receiver) -> None:
    async with RestClient(receiver.url, TOKEN) as rest:
        result = await submit_url(rest, prepare_url("https://example.com/a", generate_summary=True))
    assert receiver.json == [{"url": "https://example.com/a", "generate_summary": True}]
    assert (result.job_id, result.run_id, result.kind) == (None, "run-2", "url")


async def test_a_file_removed_after_checking_fails_before_the_request(receiver: Receiver, pdf: Path) -> None:
    prepared = prepare_upload(pdf)
    remove(pdf)
    async with RestClient(receiver.url, TOKEN) as rest:
        with pytest.raises(UploadError, match=rf"cannot upload {pdf}"):
            await upload(rest, prepared)
    assert receiver.requests == 0


async def test_an_answer_without_run_id_is_an_api_error(receiver: Receiver, pdf: Path) -> None:
    prepared = prepare_upload(pdf)
    broken = type(prepared)(prepared.path, "pdf", "/api/broken/upload-pdf", prepared.content_type,
                            prepared.size, ())
    async with RestClient(receiver.url, TOKEN) as rest:
        with pytest.raises(APIError, match=r"POST /api/broken/upload-pdf.*no run_id"):
            await upload(rest, broken)


BIG = 48 * 2**20


@pytest.fixture
def big_wav(tmp_path: Path) -> Path:
    big = tmp_path / "big.wav"
    with open(big, "wb") as out:
        block = os.urandom(2**20)
        for _ in range(BIG // len(block)):
            out.write(block)
    return big


async def test_a_large_file_is_streamed_not_read_whole(receiver: Receiver, big_wav: Path) -> None:
    size, big = BIG, big_wav
    async with RestClient(receiver.url, TOKEN) as rest:
        prepared = prepare_upload(big)
        tracemalloc.start()
        try:
            result = await upload(rest, prepared)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.run_id == "run-1"
    assert receiver.parts["file"] == {"sha256": sha256(big), "size": size, "filename": "big.wav",
                                      "content_type": "audio/wav"}
    # client and receiver together never held more than a few chunks, far from the 48 MiB file
    assert peak < size / 8, f"peak traced memory {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB upload"
