"""Hypothesis fuzz of request bodies: whatever a client sends, the answer is never a 5xx, and anything
accepted (202) is something the Generator accepts too."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sampleforge.params import GenerationParams
from sampleforge.serve.schemas import TASK_FIELDS

FIELDS = ["prompt", "count", "steps", "cfg_scale", "sampler", "seed", "duration", "format"]
TASK_PARAMS = sorted(TASK_FIELDS.values())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["kick", "ddim", "euler", "wav", "flac", "mp3", "", " ", "1e309", "NaN", "0", "16"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
generate_bodies = st.dictionaries(st.sampled_from([*FIELDS, "extra", "Prompt"]), values, max_size=9)
# mostly-valid bodies: each field either a plausible value or junk
plausible = st.fixed_dictionaries(
    {"prompt": st.one_of(st.sampled_from(["kick", "punchy 808 kick", "closed hat"]), st.text(max_size=40))},
    optional={
        "count": st.one_of(st.integers(-2, 20), values),
        "steps": st.one_of(st.integers(-2, 300), values),
        "cfg_scale": st.one_of(st.floats(-5, 40), values),
        "seed": st.one_of(st.integers(-5, 2**32), values),
        "duration": st.one_of(st.floats(-1, 12), values),
        "sampler": st.one_of(
            st.sampled_from(["ddim", "euler", "heun", "dpmpp_2m", "flow_euler", "bogus"]), values
        ),
        "format": st.one_of(st.sampled_from(["wav", "flac", "ogg"]), values),
    },
)
# at and just past every limit (most accepted): where off-by-one and float-rounding bugs live
edges = st.fixed_dictionaries(
    {"prompt": st.sampled_from(["kick", "snare deep", "x" * 300, "x" * 301, "open hat 808"])},
    optional={
        "count": st.sampled_from([1, 16, 17]),
        "steps": st.sampled_from([1, 2, 200, 201]),
        "cfg_scale": st.one_of(st.floats(0, 30), st.sampled_from([0, 30, 30.000001, -0.0, 1e-300])),
        "seed": st.sampled_from([0, 2**31 - 1, 2**31, None]),
        "duration": st.one_of(st.floats(0.25, 4.0), st.sampled_from([0.25, 4.0, 0.2499, 4.0001, 1e-320])),
        "sampler": st.sampled_from(
            ["ddim", "euler", "heun", "dpmpp_2m", "euler_ancestral", "flow_euler", None]
        ),
        "format": st.sampled_from(["wav", "flac", "wav16", "wav24", "mp3"]),
    },
)
task_bodies = st.fixed_dictionaries(
    {
        "type": st.one_of(st.just("audio-generation"), values),
        "data": st.one_of(
            st.fixed_dictionaries(
                {
                    "operation": st.one_of(st.just("generate"), values),
                    "prompt": st.one_of(st.just("kick"), values),
                    "params": st.dictionaries(st.sampled_from(TASK_PARAMS), values),
                }
            ),
            values,
        ),
    },
    optional={"id": values, "modelType": values, "storeResults": values},
)


@pytest.fixture
def client(make_client):
    return make_client(start=False, max_queue=1_000_000)  # workers off: this is about the front door


def _post(client, path: str, body) -> object:
    raw = json.dumps(body, allow_nan=True).encode()  # NaN / Infinity literals, as a sloppy client sends them
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def _check_accepted(client, r) -> None:
    event(f"HTTP {r.status_code}")
    assert r.status_code < 500, r.text
    assert r.status_code in (202, 413, 422), r.text
    if r.status_code == 202:
        job = client.get(f"/v1/jobs/{r.json()['job_id']}").json()
        p = job["params"]
        GenerationParams(steps=p["steps"], cfg_scale=p["cfg_scale"], count=p["count"], duration=p["duration"],
                         sampler=p["sampler"])  # the Generator's own check
        assert math.isfinite(p["cfg_scale"]) and p["count"] <= 16 and p["steps"] <= 200
    else:
        json.loads(r.text)  # errors are strict JSON too


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(body=st.one_of(generate_bodies, plausible, edges, values))
def test_generate_never_5xx(client, body):
    _check_accepted(client, _post(client, "/v1/generate", body))


@SETTINGS
@given(body=st.one_of(task_bodies, values))
def test_tasks_never_5xx(client, body):
    _check_accepted(client, _post(client, "/v1/tasks", body))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=300),
    ctype=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
)
def test_arbitrary_bytes_never_5xx(client, raw, ctype):
    r = client.post("/v1/generate", content=raw, headers={"content-type": ctype} if ctype else {})
    assert r.status_code < 500 and r.status_code in (202, 400, 413, 415, 422), r.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    job_id=st.text(max_size=60),
    suffix=st.sampled_from(["", "/events", "/audio/0", "/audio/x.wav", "/pack.zip"]),
)
def test_arbitrary_job_paths_never_5xx(client, job_id, suffix):
    from urllib.parse import quote

    r = client.get(f"/v1/jobs/{quote(job_id, safe='')}{suffix}")
    assert r.status_code in (404, 405, 307), (job_id, r.status_code, r.text)
