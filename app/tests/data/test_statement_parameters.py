"""A failed statement's error names the statement, never its parameters: those hold
novels' text, titles and client addresses, and errors end up in logs and reports."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from morpheus.db import comics
from morpheus.db.session import make_engine, make_sessionmaker
from morpheus.logging import configure_logging, get_logger
from sqlalchemy.exc import DataError


def test_a_failed_insert_does_not_carry_the_novel_or_the_client(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    novel = f"Once upon a time, {uuid.uuid4().hex} climbed the stairs."
    address = "198.51.100.23"
    session = make_sessionmaker(engine)()
    try:
        with pytest.raises(DataError) as caught:
            # Past the request models' checks: what PostgreSQL itself refuses.
            comics.create_comic(
                session, title="Nul\x00title", source_text=novel, client_addr=address
            )
        session.rollback()
    finally:
        session.close()
        engine.dispose()
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        get_logger("test").error("insert failed", error=repr(caught.value), exc_info=caught.value)
    finally:
        configure_logging("INFO")
    line = json.loads(stream.getvalue().splitlines()[-1])
    for written in (str(caught.value), line["exception"]):
        assert "INSERT INTO comics" in written  # the statement is named
        assert "parameters hidden" in written
    for written in (str(caught.value), json.dumps(line)):
        assert novel not in written and address not in written and "Nul" not in written


def test_every_engine_hides_parameters(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert engine.hide_parameters is True
    finally:
        engine.dispose()
