"""Every SQL query docs/projections.md shows runs, as written, on the databases it names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import Engine, text

from auditledger.adapters import Ledger, OpenAIBatchRunner
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from tests.support.batches import settle

DOC = (Path(__file__).parents[2] / "docs" / "projections.md").read_text()
SECTION = DOC.split("## Reading the landscape with SQL", 1)[1].split("\n## ", 1)[0]
BLOCK = re.compile(r"```sql\n-- ([a-z, ]+): ([^\n]+)\n(.*?)```", re.S)
QUERIES = [
    (dialect.strip(), title, sql)
    for dialects, title, sql in BLOCK.findall(SECTION)
    for dialect in dialects.split(",")
]
TOKENS = ["ticket-0", "ticket-1", "ticket-2"]


def test_the_section_shows_each_query_for_both_databases() -> None:
    titles = {title for _, title, _ in QUERIES}
    assert len(titles) == 4
    for title in titles:
        assert {d for d, t, _ in QUERIES if t == title} == {"sqlite", "postgresql"}, title


def a_retried_batch(ledger: Ledger, fake: FakeOpenAI, base_url: str) -> tuple[str, list[str]]:
    run_id = ledger.begin_run(config={})
    batch_id = ledger.create_batch(run_id, "summarise")
    for token in TOKENS:
        ledger.add_batch_member(batch_id, token)
    state_id = ledger.open_state(
        run_id=run_id, token_id=f"flush-{run_id}", node_id="summarise", step_index=1
    )
    client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0, timeout=2)
    runner = OpenAIBatchRunner(ledger, client)
    fake.inject("error_line")
    requests = {t: {"model": "m", "messages": [{"role": "user", "content": t}]} for t in TOKENS}
    handle = runner.submit(batch_id, state_id, requests)
    settle(runner, handle)
    retry = runner.retry_failed(handle)
    settle(runner, retry)
    return run_id, [batch_id, retry.batch_id]


def summaries(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.summary_json FROM calls c JOIN node_states s "
                "ON s.state_id = c.state_id WHERE s.run_id = :run_id "
                "AND c.call_type = 'llm' AND c.status = 'success'"
            ),
            {"run_id": run_id},
        )
        return [json.loads(row.summary_json) for row in rows]


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_every_documented_query_runs_and_answers_what_it_says(
    dialect: str,
    fake: FakeOpenAI,
    base_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = (
        f"sqlite:///{tmp_path}/ledger"
        if dialect == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    with Ledger.open(url) as ledger:
        run_id, (first, retry) = a_retried_batch(ledger, fake, base_url)
        ledger.catch_up()
        engine = ledger.landscape_engine
        assert engine.dialect.name == dialect
        answers = {}
        with engine.connect() as conn:
            for query_dialect, title, sql in QUERIES:
                if query_dialect == dialect:
                    rows = conn.execute(text(sql), {"run_id": run_id}).all()
                    answers[title] = [tuple(row) for row in rows]
        used = summaries(engine, run_id)

    assert answers["batch attempts"] == [
        (first, "summarise", 0, "failed", None),
        (retry, "summarise", 1, "completed", first),
    ]
    assert answers["members of each attempt"] == [
        (0, 0, "ticket-0", "failed"),
        (0, 1, "ticket-1", "failed"),
        (0, 2, "ticket-2", "failed"),
        (1, 0, "ticket-0", "completed"),
    ]
    total = sum(s["total_tokens"] for s in used if s["model"] == "m")
    assert total > 0
    assert answers["tokens per model"] == [("m", len(used), total)]
    assert answers["members without a result"] == [
        ("ticket-0", "BatchMemberFailed", 400, "bad request")
    ]
