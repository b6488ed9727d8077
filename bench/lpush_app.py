"""The HTTP enqueue benchmark's limit: the least an enqueue endpoint can do in FastAPI.

One POST route that reads a JSON body into a small pydantic model and LPUSHes it to one Redis
list, answering 201: no job types, no options, no auth, no Lua. One uvicorn process serving it
on this machine is what one of our API processes is measured against (bench/http_enqueue.py).
Configured from BENCH_REDIS_URL and BENCH_LIST.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, status
from pydantic import BaseModel
from redis.asyncio import Redis

REDIS = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
LIST = os.environ.get("BENCH_LIST", "bench-lpush")


class Job(BaseModel):
    """What a client sends: a type and its data."""

    type: str
    data: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await REDIS.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/enqueue", status_code=status.HTTP_201_CREATED)
async def enqueue(job: Job) -> dict[str, int]:
    """Push the job's JSON; answers the list's length."""
    return {"length": await REDIS.lpush(LIST, job.model_dump_json())}
