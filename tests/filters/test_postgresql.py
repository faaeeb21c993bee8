"""Unit tests of filter_plugins/postgresql.py."""

import pytest
from ansible.errors import AnsibleFilterError
from postgresql import FilterModule, pg_memory, pg_memory_kb, pg_tune


@pytest.mark.parametrize(
    ("value", "kb"),
    [
        ("512MB", 512 * 1024),
        ("4GB", 4 * 1024 * 1024),
        ("4gb", 4 * 1024 * 1024),
        ("64kB", 64),
        ("1TB", 1024**3),
        (" 128 MB ", 128 * 1024),
        ("8192B", 8),
        (256, 256 * 1024),
        ("256", 256 * 1024),
        (0, 0),
    ],
)
def test_pg_memory_kb_parses(value, kb):
    assert pg_memory_kb(value, "v") == kb


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "v: 'lots' is not a memory size (for example 512MB or 4GB)"),
        ("4 GiB", "v: '4 GiB' is not a memory size (for example 512MB or 4GB)"),
        ("1.5GB", "v: '1.5GB' is not a memory size (for example 512MB or 4GB)"),
        ("-1MB", "v: '-1MB' is not a memory size (for example 512MB or 4GB)"),
        ("", "v: '' is not a memory size (for example 512MB or 4GB)"),
        (None, "v: None is not a memory size (for example 512MB or 4GB)"),
        (True, "v: True is not a memory size (for example 512MB or 4GB)"),
        (-5, "v: -5 is not a memory size (for example 512MB or 4GB)"),
        ("1000B", "v: '1000B' is not a whole number of kilobytes"),
    ],
)
def test_pg_memory_kb_refuses(value, message):
    with pytest.raises(AnsibleFilterError) as error:
        pg_memory_kb(value, "v")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("value", "text"),
    [("1024MB", "1GB"), (1536, "1536MB"), ("64kB", "64kB"), ("2048kB", "2MB"), ("1TB", "1TB")],
)
def test_pg_memory_normalises(value, text):
    assert pg_memory(value) == text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (4096, 2, 20),
            {
                "max_connections": 30,
                "shared_buffers": "1GB",
                "effective_cache_size": "3GB",
                "maintenance_work_mem": "256MB",
                "work_mem": "34MB",
                "max_worker_processes": 8,
                "max_parallel_workers": 2,
                "max_parallel_workers_per_gather": 1,
            },
        ),
        (
            (16384, 8, 50),
            {
                "max_connections": 60,
                "shared_buffers": "4GB",
                "effective_cache_size": "12GB",
                "maintenance_work_mem": "1GB",
                "work_mem": "17MB",
                "max_worker_processes": 8,
                "max_parallel_workers": 8,
                "max_parallel_workers_per_gather": 4,
            },
        ),
        (
            (1024, 1, 0),
            {
                "max_connections": 20,
                "shared_buffers": "256MB",
                "effective_cache_size": "768MB",
                "maintenance_work_mem": "64MB",
                "work_mem": "12MB",
                "max_worker_processes": 8,
                "max_parallel_workers": 1,
                "max_parallel_workers_per_gather": 1,
            },
        ),
        (
            (65536, 16, 100),
            {
                "max_connections": 110,
                "shared_buffers": "16GB",
                "effective_cache_size": "48GB",
                "maintenance_work_mem": "2GB",
                "work_mem": "18MB",
                "max_worker_processes": 16,
                "max_parallel_workers": 16,
                "max_parallel_workers_per_gather": 8,
            },
        ),
    ],
)
def test_pg_tune_sizes_from_host(args, expected):
    assert pg_tune(*args) == expected


def test_pg_tune_overrides_win_and_are_normalised():
    tuned = pg_tune(
        4096,
        2,
        20,
        {
            "shared_buffers": "512MB",
            "work_mem": 8,
            "max_connections": 50,
            "effective_cache_size": None,
            "maintenance_work_mem": "",
        },
    )
    assert tuned["shared_buffers"] == "512MB"
    assert tuned["work_mem"] == "8MB"
    assert tuned["max_connections"] == 50
    # Null or empty overrides keep the computed value.
    assert tuned["effective_cache_size"] == "3GB"
    assert tuned["maintenance_work_mem"] == "256MB"


def test_pg_tune_work_mem_follows_overridden_shared_buffers():
    # (4096 - 2048) MB / (3 * 30) = 22.7 MB
    assert pg_tune(4096, 2, 20, {"shared_buffers": "2GB"})["work_mem"] == "22MB"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (4096, 2, 20, {"shared_buffers": "lots"}),
            "postgresql_shared_buffers: 'lots' is not a memory size (for example 512MB or 4GB)",
        ),
        (
            (4096, 2, 20, {"work_mem": "1.5GB"}),
            "postgresql_work_mem: '1.5GB' is not a memory size (for example 512MB or 4GB)",
        ),
        (
            (4096, 2, 20, {"shared_buffers": "8GB"}),
            "postgresql_shared_buffers: 8GB is not less than the host's memory (4GB)",
        ),
        (
            (4096, 2, 40, {"max_connections": 30}),
            "postgresql_max_connections: 30 leaves no room for the pooler's 40 server "
            "connections plus 3 reserved for superusers",
        ),
        (
            (4096, 2, 20, {"max_connections": "many"}),
            "postgresql_max_connections: 'many' is not an integer >= 1",
        ),
        (
            (4096, 2, 20, {"shared_buffer": "1GB"}),
            "postgresql: unknown setting(s) to override: shared_buffer",
        ),
        ((4096, 2, 20, ["x"]), "postgresql: overrides must be a mapping"),
        ((100, 2, 20), "postgresql: host memory (MB): 100 is not an integer >= 256"),
        ((4096, 0, 20), "postgresql: host cores: 0 is not an integer >= 1"),
        ((4096, 2, -1), "postgresql_pooler_connections: -1 is not an integer >= 0"),
    ],
)
def test_pg_tune_refuses(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        pg_tune(*args)
    assert str(error.value) == message


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"pg_memory_kb", "pg_memory", "pg_tune"}
