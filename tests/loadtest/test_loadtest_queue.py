"""morpheus_loadtest.queue: the queue's figures from the service's /metrics."""

from __future__ import annotations

from morpheus_loadtest.queue import QueueSampler, queue_jobs

EXPOSITION = """# HELP morpheus_queue_jobs Jobs per state.
# TYPE morpheus_queue_jobs gauge
morpheus_queue_read_success 1.0
morpheus_queue_jobs{state="waiting"} 12.0
morpheus_queue_jobs{state="active"} 2.0
morpheus_queue_jobs{state="delayed"} 0.0
morpheus_http_requests_total{site="api",method="GET",route="/health",status="200"} 5.0
"""


def test_queue_jobs_reads_the_jobs_by_state():
    assert queue_jobs(EXPOSITION) == {"waiting": 12, "active": 2, "delayed": 0}
    assert queue_jobs("morpheus_queue_read_success 0.0\n") == {}


def test_the_sampler_takes_the_first_url_that_answers_and_keeps_it_first():
    asked = []

    def read(url: str) -> str:
        asked.append(url)
        if url.endswith(":8000/metrics"):
            raise ConnectionRefusedError(url)  # the other slot serves
        return EXPOSITION

    seen = []
    sampler = QueueSampler(
        ["http://a:8000/metrics", "http://a:8100/metrics"],
        read=read,
        clock=lambda: 42.0,
        on_sample=seen.append,
    )
    first = sampler.sample()
    assert (first.at, first.waiting, first.active) == (42.0, 12, 2)
    assert sampler.urls[0] == "http://a:8100/metrics"
    sampler.sample()
    assert asked == ["http://a:8000/metrics", "http://a:8100/metrics", "http://a:8100/metrics"]
    assert seen == sampler.samples and sampler.latest == seen[-1]


def test_the_sampler_counts_the_samples_it_missed():
    def read(url: str) -> str:
        raise TimeoutError(url)

    sampler = QueueSampler(["http://a:8000/metrics"], read=read)
    assert sampler.sample() is None
    assert sampler.misses == 1 and sampler.latest is None


def test_a_sampler_without_urls_never_starts():
    sampler = QueueSampler([])
    sampler.start()
    sampler.stop()
    assert sampler.samples == []
