"""Range requests (RFC 9110 §14) on every download route: clips, packs, workflow results; HEAD."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from sampleforge.serve.downloads import Unsatisfiable, byte_range


@pytest.mark.parametrize("header, span", [
    ("bytes=0-99", (0, 100)),
    ("bytes=100-", (100, 1000)),
    ("bytes=-500", (500, 1000)),
    ("bytes=-5000", (0, 1000)),  # a suffix longer than the file: all of it
    ("bytes=990-2000", (990, 1000)),  # last past the end: the end
    ("bytes=999-999", (999, 1000)),
    ("Bytes= 5-5 ", (5, 6)),
    ("bytes=0-" + "9" * 30, (0, 1000)),
    ("bytes=0-1,5-9", None),  # several ranges: the whole file
    ("items=0-1", None),
    ("bytes=9-3", None),  # last < first: invalid, ignored
    ("bytes=abc", None),
    ("bytes=-", None),
    ("bytes 0-1", None),
])
def test_byte_range(header: str, span: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=" + "9" * 30 + "-"])
def test_byte_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)


@pytest.fixture
def finished(make_client, wait_job, tmp_path: Path):
    """(client, job, the first clip's bytes on disk, the pack's bytes on disk) of a finished two-clip job."""
    client = make_client()
    job_id = client.post("/v1/generate", json={"prompt": "kick", "count": 2, "steps": 2, "seed": 5}).json()["job_id"]
    job = wait_job(client, job_id)
    assert job["state"] == "succeeded", job
    folder = tmp_path / "storage" / "results" / job_id
    return client, job, (folder / "0.wav").read_bytes(), (folder / "pack.zip").read_bytes()


def test_full_answer_says_it_takes_ranges(finished) -> None:
    client, job, clip, _ = finished
    r = client.get(job["results"][0]["url"])
    assert r.status_code == 200 and r.content == clip
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-length"] == str(len(clip))
    assert "content-range" not in r.headers and r.headers["etag"].startswith('"')


@pytest.mark.parametrize("header, start, stop", [
    ("bytes=0-99", 0, 100),
    ("bytes=1000-1999", 1000, 2000),
    ("bytes=-500", -500, None),  # suffix
    ("bytes=100-", 100, None),  # open
    ("bytes=44-999999999", 44, None),  # last past the end
])
def test_partial_answers_are_the_bytes_of_the_file(finished, header: str, start: int, stop: int | None) -> None:
    client, job, clip, _ = finished
    want = clip[start:stop]
    first = start if start >= 0 else len(clip) + start
    r = client.get(job["results"][0]["url"], headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == want and r.headers["content-length"] == str(len(want))
    assert r.headers["content-range"] == f"bytes {first}-{first + len(want) - 1}/{len(clip)}"
    assert r.headers["content-type"] == "audio/wav"


def test_unsatisfiable_range_is_416_with_the_size(finished) -> None:
    client, job, clip, _ = finished
    for header in (f"bytes={len(clip)}-", "bytes=-0", f"bytes={len(clip) + 10}-{len(clip) + 20}"):
        r = client.get(job["results"][0]["url"], headers={"Range": header})
        assert r.status_code == 416, (header, r.text)
        assert r.headers["content-range"] == f"bytes */{len(clip)}" and "detail" in r.json()


def test_ignored_ranges_give_the_whole_file(finished) -> None:
    client, job, clip, _ = finished
    url = job["results"][0]["url"]
    for headers in ({"Range": "bytes=0-9,20-29"}, {"Range": "bytes=9-3"}, {"Range": "lines=1-2"},
                    {"Range": "bytes=0-9", "If-Range": '"not-this-file"'}):
        r = client.get(url, headers=headers)
        assert r.status_code == 200 and r.content == clip, headers
    etag, modified = client.get(url).headers["etag"], client.get(url).headers["last-modified"]
    for validator in (etag, modified):  # the file is unchanged: the range holds
        r = client.get(url, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert r.status_code == 206 and r.content == clip[:10]


def test_head_gives_the_headers_without_a_body(finished) -> None:
    client, job, clip, pack = finished
    for url, size in ((job["results"][0]["url"], len(clip)), (job["urls"]["pack"], len(pack))):
        got, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b""
        for name in ("content-length", "accept-ranges", "content-type", "content-disposition", "etag"):
            assert head.headers[name] == got.headers[name], name
        assert head.headers["content-length"] == str(size)
    assert client.head(job["results"][0]["url"], headers={"Range": "bytes=0-9"}).status_code == 200  # GET only
    assert client.head(f"/v1/jobs/{job['job_id']}/audio/7").status_code == 404


def test_pack_resumes_where_it_stopped(finished) -> None:
    client, job, _, pack = finished
    url = job["urls"]["pack"]
    head = client.get(url, headers={"Range": "bytes=0-1023"})
    rest = client.get(url, headers={"Range": "bytes=1024-"})
    assert head.status_code == rest.status_code == 206
    assert head.content + rest.content == pack == client.get(url).content
    with zipfile.ZipFile(io.BytesIO(head.content + rest.content)) as z:
        prefix = f"kick_{job['job_id'][:8]}"
        assert sorted(z.namelist()) == ["job.json", f"{prefix}_0.wav", f"{prefix}_1.wav"] and z.testzip() is None
    r = client.get(url, headers={"Range": f"bytes={len(pack)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(pack)}"


def test_workflow_results_take_ranges(make_client, generator, wait_job) -> None:
    client = make_client()
    buf = io.BytesIO()
    sf.write(buf, generator.generate("snare", steps=2, seed=3).numpy()[0], 44100, format="WAV", subtype="FLOAT")
    job_id = client.post("/v1/vary", json={"audio": base64.b64encode(buf.getvalue()).decode(), "count": 1,
                                           "steps": 2, "format": "flac"}).json()["job_id"]
    job = wait_job(client, job_id)
    url = job["results"][0]["url"]
    assert url.endswith("/audio/0.flac")
    whole = client.get(url)
    assert whole.headers["content-type"] == "audio/flac"
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]


def test_a_pack_stored_without_its_zip_is_zipped_while_sent(finished, tmp_path: Path) -> None:
    client, job, clip, pack = finished
    (tmp_path / "storage" / "results" / job["job_id"] / "pack.zip").unlink()  # as jobs of older versions
    r = client.get(job["urls"]["pack"], headers={"Range": "bytes=0-9"})
    assert r.status_code == 200 and r.content != pack  # the whole zip, streamed
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.read(f"kick_{job['job_id'][:8]}_0.wav") == clip
