"""Conversations in the store: turns kept across requests, one answer at a time, deleted on request."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from standin.server import StandInServer
from tests.conftest import caller_keys, store_env, wait_for_record
from tests.faults import FaultyProxy
from tests.harness import AppProcess, start_app
from tests.media import b64, pdf, png

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def store_app(standin: StandInServer, dynamodb) -> Iterator[AppProcess]:
    process = start_app(standin.url, **store_env(dynamodb), BEDROCK_MAX_ATTEMPTS="1")
    yield process
    process.stop()


def chat(app: AppProcess, body: dict, headers: dict | None = None) -> tuple[dict, str, dict]:
    """Send one /chat in NDJSON; return its start event, its answer text and its last event."""
    response = httpx.post(f"{app.url}/chat", json=body, headers={**NDJSON, **(headers or {})}, timeout=30)
    assert response.status_code == 200, response.text
    lines = [httpx.Response(200, content=line).json() for line in response.text.splitlines()]
    text = "".join(line["text"] for line in lines if line["type"] == "token")
    return lines[0], text, lines[-1]


def sent_to_bedrock(standin: StandInServer, label: str) -> list:
    return next(r for r in standin.records if r.scenario["id"] == label).messages


def test_three_requests_make_one_conversation(store_app, standin):
    start, first, _ = chat(store_app, {"prompt": "[standin tokens=5 id=conv-1] one"})
    conversation_id = start["conversationId"]
    _, second, _ = chat(
        store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=6 id=conv-2] two"}
    )
    _, third, end = chat(
        store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=7 id=conv-3] three"}
    )
    assert end["stopReason"] == "end_turn"
    # Bedrock got the earlier turns ahead of each new prompt.
    assert sent_to_bedrock(standin, "conv-3") == [
        ("user", "[standin tokens=5 id=conv-1] one"),
        ("assistant", first),
        ("user", "[standin tokens=6 id=conv-2] two"),
        ("assistant", second),
        ("user", "[standin tokens=7 id=conv-3] three"),
    ]
    stored = httpx.get(f"{store_app.url}/conversations/{conversation_id}", timeout=10).json()
    assert stored["conversationId"] == conversation_id
    assert [(turn["role"], turn["content"]) for turn in stored["turns"]] == [
        *sent_to_bedrock(standin, "conv-3"),
        ("assistant", third),
    ]
    assert stored["turns"][-1]["stopReason"] == "end_turn" and "cut" not in stored["turns"][-1]


def test_a_cut_answer_is_kept_and_marked(store_app):
    start, text, end = chat(store_app, {"prompt": "[standin tokens=50] long", "maxTokens": 4})
    assert end["stopReason"] == "max_tokens"
    turns = httpx.get(f"{store_app.url}/conversations/{start['conversationId']}", timeout=10).json()["turns"]
    assert turns[-1] == {"role": "assistant", "content": text, "stopReason": "max_tokens", "cut": True}


def test_one_answer_at_a_time_per_conversation(store_app, standin):
    start, _, _ = chat(store_app, {"prompt": "[standin tokens=2] hi"})
    conversation_id = start["conversationId"]
    body = {"conversationId": conversation_id, "prompt": "[standin tokens=400 tps=20 ttft=0 id=busy-conv] go"}
    holder = threading.Thread(target=lambda: httpx.post(f"{store_app.url}/chat", json=body, timeout=60))
    holder.start()
    wait_for_record(standin, "busy-conv", "streaming")
    second = httpx.post(
        f"{store_app.url}/chat", json={"conversationId": conversation_id, "prompt": "meanwhile"}, timeout=10
    )
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conversation_busy"
    holder.join(60)


def kept(app: AppProcess, conversation_id: str, headers: dict | None = None) -> list[tuple[str, str]]:
    """The conversation's turns as the service keeps them: (role, content)."""
    response = httpx.get(f"{app.url}/conversations/{conversation_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return [(turn["role"], turn["content"]) for turn in response.json()["turns"]]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_a_client_holding_its_messages_keeps_a_copy_and_branches_by_editing(store_app, standin, dynamodb):
    """The page's way: it sends every turn, and the service keeps them, replacing what an edit drops."""
    start, first, _ = chat(store_app, {"messages": [user("[standin tokens=3] one")], "store": True})
    conversation_id = start["conversationId"]
    history = [user("[standin tokens=3] one"), assistant(first), user("[standin tokens=40 id=mirror-2] two")]
    _, second, _ = chat(store_app, {"messages": history, "conversationId": conversation_id})
    # Bedrock got the client's messages as sent: the service put nothing in front of them.
    assert sent_to_bedrock(standin, "mirror-2") == [(m["role"], m["content"]) for m in history]
    history += [assistant(second), user("[standin tokens=4] three")]
    _, third, _ = chat(store_app, {"messages": history, "conversationId": conversation_id})
    assert kept(store_app, conversation_id) == [(m["role"], m["content"]) for m in history] + [
        ("assistant", third)
    ]
    # Editing the second question drops it and everything after, here and in the store.
    edited = [*history[:2], user("[standin tokens=2 id=mirror-edit] two, edited")]
    _, branch, _ = chat(store_app, {"messages": edited, "conversationId": conversation_id})
    assert sent_to_bedrock(standin, "mirror-edit") == [(m["role"], m["content"]) for m in edited]
    assert kept(store_app, conversation_id) == [(m["role"], m["content"]) for m in edited] + [
        ("assistant", branch)
    ]
    listed = httpx.get(f"{store_app.url}/conversations/{conversation_id}", timeout=10).json()
    assert listed["title"] == "[standin tokens=3] one" and listed["modelId"] == start["modelId"]
    # The dropped turns are deleted, not only hidden.
    assert sorted(stored_items(dynamodb, conversation_id)) == [
        "m",
        "t#000000#000",
        "t#000001#000",
        "t#000002#000",
        "t#000003#000",
    ]
    # And the conversation goes on with a prompt, the service now holding the history.
    chat(store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=2 id=mirror-p] on"})
    assert sent_to_bedrock(standin, "mirror-p")[:4] == [(m["role"], m["content"]) for m in edited] + [
        ("assistant", branch)
    ]


def stored_items(dynamodb, conversation_id: str) -> dict[str, dict]:
    """The conversation's items in the table, by sort key, as DynamoDB holds them."""
    answer = dynamodb.client().query(
        TableName=dynamodb.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"c#{conversation_id}"}},
    )
    return {item["sk"]["S"]: item for item in answer["Items"]}


def test_a_deleted_conversation_is_gone(store_app):
    start, _, _ = chat(store_app, {"prompt": "[standin tokens=2] hi"})
    url = f"{store_app.url}/conversations/{start['conversationId']}"
    assert httpx.delete(url, timeout=10).status_code == 204
    for response in (
        httpx.get(url, timeout=10),
        httpx.delete(url, timeout=10),
        httpx.post(
            f"{store_app.url}/chat",
            json={"conversationId": start["conversationId"], "prompt": "again"},
            timeout=10,
        ),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_with_sign_in_each_caller_lists_and_touches_only_their_own(standin, dynamodb):
    hashes, headers = caller_keys("alice", "bob")
    app = start_app(standin.url, **store_env(dynamodb), AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    try:
        alice, bob = ({**headers[name]} for name in ("alice", "bob"))
        start, _, _ = chat(app, {"prompt": "[standin tokens=2] alice's question"}, alice)
        conversation_id = start["conversationId"]
        listed = httpx.get(f"{app.url}/conversations", headers=alice, timeout=10).json()["conversations"]
        assert [(c["conversationId"], c["turns"]) for c in listed] == [(conversation_id, 2)]
        assert listed[0]["title"] == "[standin tokens=2] alice's question"
        assert httpx.get(f"{app.url}/conversations", headers=bob, timeout=10).json() == {"conversations": []}
        url = f"{app.url}/conversations/{conversation_id}"
        for response in (
            httpx.get(url, headers=bob, timeout=10),
            httpx.delete(url, headers=bob, timeout=10),
            httpx.post(
                f"{app.url}/chat", json={"conversationId": conversation_id, "prompt": "hi"}, headers=bob
            ),
        ):
            assert response.status_code == 404, response.text
        assert httpx.get(url, headers=alice, timeout=10).status_code == 200
    finally:
        app.stop()


def test_the_list_comes_a_page_at_a_time_and_only_ever_the_callers_own(standin, dynamodb):
    hashes, headers = caller_keys("alice", "bob")
    app = start_app(standin.url, **store_env(dynamodb), AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    try:
        alice, bob = headers["alice"], headers["bob"]
        bobs = chat(app, {"prompt": "[standin tokens=2] before alice's"}, bob)[0]["conversationId"]
        asked = [{"prompt": f"[standin tokens=2] question {n}"} for n in range(5)]
        made = [chat(app, body, alice)[0]["conversationId"] for body in asked]
        url = f"{app.url}/conversations"
        whole = httpx.get(url, headers=alice, timeout=10).json()
        assert [c["conversationId"] for c in whole["conversations"]] == made[::-1]
        assert "nextCursor" not in whole
        pages, cursor = [], None
        while len(pages) < 5:  # three are expected; a cursor not followed would go on for ever
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = httpx.get(url, params=params, headers=alice, timeout=10).json()
            pages.append([c["conversationId"] for c in page["conversations"]])
            cursor = page.get("nextCursor")
            if cursor is None:
                break
            # Another caller's list from the same place holds only their own.
            theirs = httpx.get(url, params={"cursor": cursor}, headers=bob, timeout=10).json()
            assert [c["conversationId"] for c in theirs["conversations"]] == [bobs]
        assert pages == [made[:2:-1], made[2:0:-1], made[:1]]
        # A page that holds the rest exactly has no next one.
        assert "nextCursor" not in httpx.get(url, params={"limit": "5"}, headers=alice, timeout=10).json()
        for name, value in (("limit", "0"), ("limit", "51"), ("limit", "²"), ("cursor", "not-a-cursor")):
            refused = httpx.get(url, params={name: value}, headers=alice, timeout=10)
            assert refused.status_code == 400, refused.text
            assert f"'{name}'" in refused.json()["error"]["message"]
    finally:
        app.stop()


def test_without_sign_in_there_is_no_list(store_app):
    response = httpx.get(f"{store_app.url}/conversations", timeout=10)
    assert response.status_code == 404
    assert "sign-in" in response.json()["error"]["message"]


def test_a_text_or_json_client_learns_its_conversation_without_a_start_event(store_app):
    url, as_json = f"{store_app.url}/chat", {"Accept": "application/json"}
    text = httpx.post(url, json={"prompt": "[standin tokens=2] hi"}, timeout=30)
    conversation_id = text.headers["x-conversation-id"]
    body = {"prompt": "[standin tokens=2] more", "conversationId": conversation_id}
    answer = httpx.post(url, json=body, headers=as_json, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-conversation-id"] == answer.json()["conversationId"] == conversation_id
    assert answer.json()["streamId"] == answer.headers["x-stream-id"]
    kept = httpx.get(f"{store_app.url}/conversations/{conversation_id}", timeout=10).json()
    assert [turn["content"] for turn in kept["turns"]][::2] == ["[standin tokens=2] hi", body["prompt"]]
    # An exchange not kept names no conversation.
    unkept = httpx.post(url, json={"prompt": "[standin tokens=2] aside", "store": False}, headers=as_json)
    assert unkept.status_code == 200 and "x-conversation-id" not in unkept.headers
    assert "conversationId" not in unkept.json()


def test_a_client_that_sends_its_own_messages_gets_no_conversation(store_app):
    start, _, _ = chat(store_app, {"messages": [{"role": "user", "content": "[standin tokens=2] hi"}]})
    assert "conversationId" not in start and "streamId" in start
    start, _, _ = chat(store_app, {"prompt": "[standin tokens=2] hi", "store": False})
    assert "conversationId" not in start and "streamId" in start


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "hi", "store": "yes"}, "'store' must be true or false"),
        ({"prompt": "hi", "store": None}, "'store' must be true or false"),
        (
            {"prompt": "hi", "conversationId": "x", "store": False},
            "'store' cannot be false with 'conversationId'",
        ),
    ],
)
def test_store_is_checked(store_app, body, words):
    response = httpx.post(f"{store_app.url}/chat", json=body, timeout=10)
    assert response.status_code == 400 and words in response.json()["error"]["message"]


def test_store_needs_the_store(client):
    response = client.post("/chat", json={"messages": [user("hi")], "store": True})
    assert response.status_code == 400
    assert "'store' needs the stream store" in response.json()["error"]["message"]


def test_files_are_kept_by_name_and_a_turn_of_files_alone_is_named_to_the_model(store_app, standin):
    image = {"image": {"format": "png", "data": b64(png())}}
    document = {"document": {"format": "pdf", "name": "report", "data": b64(pdf())}}
    messages = [
        {"role": "user", "content": [image]},
        assistant("a grey square"),
        {"role": "user", "content": [{"text": "[standin tokens=2] and this?"}, document]},
    ]
    start, _, _ = chat(store_app, {"messages": messages, "store": True})
    conversation_id = start["conversationId"]
    turns = httpx.get(f"{store_app.url}/conversations/{conversation_id}", timeout=10).json()["turns"]
    assert turns[0] == {"role": "user", "content": "", "files": [{"type": "image", "format": "png"}]}
    assert turns[2]["files"] == [{"type": "document", "format": "pdf", "name": "report"}]
    assert turns[2]["content"] == "[standin tokens=2] and this?"
    chat(store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=2 id=files-on] go on"})
    assert sent_to_bedrock(standin, "files-on")[:2] == [
        ("user", "(files not kept: image)"),
        ("assistant", "a grey square"),
    ]


def test_a_new_conversation_is_busy_not_unknown_while_its_first_answer_is_written(store_app, standin):
    """The id in `start` names the conversation at once: a retry right after Stop waits its turn."""
    body = {"messages": [user("[standin tokens=400 tps=20 ttft=0 id=first-answer] go")], "store": True}
    with httpx.stream("POST", f"{store_app.url}/chat", json=body, headers=NDJSON, timeout=60) as response:
        lines = response.iter_lines()
        start = httpx.Response(200, content=next(lines)).json()
        wait_for_record(standin, "first-answer", "streaming")
        again = httpx.post(
            f"{store_app.url}/chat",
            json={"messages": body["messages"], "conversationId": start["conversationId"]},
            timeout=10,
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "conversation_busy"
        httpx.post(f"{store_app.url}/chat/{start['streamId']}/cancel", timeout=10)
        last = httpx.Response(200, content=list(lines)[-1]).json()
    assert last["stopReason"] == "cancelled"
    # Cancelled with part of an answer: kept (before the end was sent), cut.
    turns = httpx.get(f"{store_app.url}/conversations/{start['conversationId']}", timeout=10).json()["turns"]
    assert [turn["role"] for turn in turns] == ["user", "assistant"] and turns[1]["cut"] is True


def test_a_new_conversation_that_keeps_nothing_is_not_left_behind(store_app):
    start, text, end = chat(
        store_app, {"prompt": "[standin stream_error=modelStreamErrorException after=0] hi"}
    )
    assert text == "" and end["type"] == "error"
    response = httpx.get(f"{store_app.url}/conversations/{start['conversationId']}", timeout=10)
    assert response.status_code == 404


def local(dynamodb, clock=None):
    """Conversations kept in the local table with a TTL of 1000 s, read with `clock` if given."""
    from bedrock_relay import conversations
    from bedrock_relay.store import Store

    store = Store(dynamodb.client(), dynamodb.table, 60)
    return conversations.Conversations(store, 1000, *([clock] if clock else []))


def begun(kept, turns: list[dict]) -> tuple[str, dict]:
    """A new conversation holding `turns`; its id, and its meta item as a next answer holds it."""
    from bedrock_relay.conversations import new_id

    conversation_id = new_id()
    held = kept.create(conversation_id, "-", "t", "first")
    kept.record(conversation_id, 0, turns, held, "first", "m")
    return conversation_id, kept.take(conversation_id, "-", "next")


def test_what_an_edit_leaves_behind_is_never_read_back(dynamodb, monkeypatch):
    """Stale turns that did not fit in the edit's transaction, or parts of a turn now shorter, stay
    hidden by the counts until TTL takes them."""
    from bedrock_relay import conversations

    monkeypatch.setattr(conversations, "PART_CHARACTERS", 4)
    kept = local(dynamodb)
    long = [user("a" * 10), assistant("b" * 8), user("c"), assistant("d")]
    conversation_id, held = begun(kept, long)
    assert kept.turns(conversation_id) == long and held["turns"] == 4
    # Room for the new turns and the meta item only: no delete fits.
    monkeypatch.setattr(conversations, "MAX_TRANSACTION_ITEMS", 3)
    assert kept.record(conversation_id, 0, [user("xy"), assistant("z")], held, "next", "m") == 3
    assert len(stored_items(dynamodb, conversation_id)) == 1 + 3 + 2 + 1 + 1  # all still there
    assert kept.turns(conversation_id) == [user("xy"), assistant("z")]


def test_a_history_too_long_for_one_transaction_is_kept_whole(dynamodb):
    """DynamoDB takes at most 100 actions in a transaction: the turns go first, in as many as they
    need, and the count moves last."""
    kept = local(dynamodb)
    history = [user(str(n)) if n % 2 else assistant(str(n)) for n in range(1, 242)]
    conversation_id, held = begun(kept, history)
    assert kept.turns(conversation_id) == history
    assert kept.record(conversation_id, 241, [assistant("242")], held, "next", "m") == 2
    assert [turn["content"] for turn in kept.turns(conversation_id)] == [str(n) for n in range(1, 243)]
    # An edit that goes back, too long for one transaction, is counted out first, then in.
    edited = [user(f"again {n}") if n % 2 else assistant(str(n)) for n in range(1, 201)]
    held = kept.take(conversation_id, "-", "edit")
    kept.record(conversation_id, 0, edited, held, "edit", "m")
    assert kept.turns(conversation_id) == edited


def test_a_failed_write_leaves_the_kept_copy_to_be_matched_by_digest(dynamodb):
    """An edit whose exchange was not kept: the next request's history differs from the kept copy
    where the edit began, not where the copy's count ends."""
    from bedrock_relay.conversations import asked, differs

    kept = local(dynamodb)
    turns = [user("u0"), assistant("a0"), user("u1"), assistant("a1"), user("u2"), assistant("a2")]
    _, held = begun(kept, turns)
    client = [user("u0"), assistant("a0"), user("u1, edited"), assistant("a1'"), user("u2")]
    messages = [{"role": t["role"], "content": [{"text": t["content"]}]} for t in client]
    assert differs(held, asked(messages)) == 2
    assert differs(held, asked(messages[:1])) == 0
    same = [{"role": t["role"], "content": [{"text": t["content"]}]} for t in [*turns, user("u3")]]
    assert differs(held, asked(same)) == 6


def test_a_conversation_expires_with_its_oldest_turn_unless_in_use(dynamodb):
    """Each turn expires on its own TTL, and the meta item no later than the oldest: used again
    once a day (or past half its TTL), the whole conversation is renewed, after the client has
    its end."""
    from bedrock_relay import conversations
    from bedrock_relay.events import Summary, Text

    now = [1_000_000.0]
    kept = local(dynamodb, lambda: now[0])
    conversation_id, _ = begun(kept, [user("q"), assistant("a")])
    kept.release(conversation_id, "next")

    def answer() -> None:
        keeper = conversations.Keeper(kept, conversation_id, kept.take(conversation_id, "-", "s"), "s")
        keeper.first, keeper.turns, keeper.model_id = keeper.held["turns"], [user("again")], "m"
        keeper.on_events([Text(1, "yes")])
        keeper.on_end(Summary(stop_reason="end_turn"))
        keeper.on_close(Summary())

    def expiries() -> dict[str, int]:
        items = stored_items(dynamodb, conversation_id)
        return {sort: int(item["expiresAt"]["N"]) for sort, item in items.items()}

    now[0] += 400  # less than half the TTL: only the new exchange is written to last longer
    answer()
    assert expiries() == {
        "m": 1_001_000,
        "t#000000#000": 1_001_000,
        "t#000001#000": 1_001_000,
        "t#000002#000": 1_001_400,
        "t#000003#000": 1_001_400,
    }
    now[0] += 200  # past half: everything is renewed
    answer()
    assert set(expiries().values()) == {1_001_600}
    assert len(kept.turns(conversation_id)) == 6
    now[0] += 1000  # unused for its whole TTL: gone, with no turn missing from what it claims
    assert kept.take(conversation_id, "-", "late") is None
    assert kept.meta(conversation_id, "-") is None


def test_a_store_that_is_down_refuses_only_a_prompt_that_needs_its_history(standin, dynamodb):
    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    app = start_app(standin.url, **{**store_env(dynamodb), "AWS_ENDPOINT_URL_DYNAMODB": proxy.url})
    try:
        start, _, _ = chat(app, {"prompt": "[standin tokens=2] hi"})
        proxy.break_()
        body = {"messages": [user("[standin tokens=3] hi")], "conversationId": start["conversationId"]}
        start, text, end = chat(app, body)
        assert end["stopReason"] == "end_turn" and text and "conversationId" not in start
        assert app.log_for(start["requestId"])["conversation"] == "unavailable"
        # A new conversation needs no history either.
        start, text, end = chat(app, {"prompt": "[standin tokens=3] hello"})
        assert end["stopReason"] == "end_turn" and text and "conversationId" not in start
        refused = httpx.post(
            f"{app.url}/chat", json={"prompt": "more", "conversationId": body["conversationId"]}, timeout=30
        )
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
    finally:
        app.stop()
        proxy.close()


def test_a_store_that_failed_is_not_waited_on_before_a_first_token_until_a_call_succeeds(dynamodb):
    from bedrock_relay.answer_cache import AnswerCache
    from bedrock_relay.conversations import Conversations, new_id
    from bedrock_relay.store import Store, StoreError

    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    try:
        store = Store(dynamodb.client(via=proxy.url), dynamodb.table, 60, probe_seconds=3600)
        kept, cache = Conversations(store, 1000), AnswerCache(store, 60)
        conversation_id = new_id()
        kept.create(conversation_id, "alice", "hello", "first")
        with pytest.raises(StoreError):
            store.call("get_item", Key={"pk": {"S": "half-a-key"}})
        assert not store.down  # a request the store refused is not the store failing
        proxy.break_()
        with pytest.raises(StoreError):
            kept.release(conversation_id, "first", made=False)
        tried = proxy.connections
        assert store.down
        # What a first token waits on fails at once, without a try that could cost its timeouts
        # (and without a probe: one is let through an hour after the failure here).
        for waited_on in (
            lambda: kept.take(conversation_id, "alice", "second"),
            lambda: kept.create(new_id(), "alice", "hello", "third"),
            lambda: cache.answer("some-key"),
        ):
            with pytest.raises(StoreError):
                waited_on()
        assert proxy.connections == tried
        # Writes off that path go on trying; the first that succeeds ends the wait.
        proxy.heal()
        kept.release(conversation_id, "first", made=False)
        assert not store.down and proxy.connections > tried
        assert kept.take(conversation_id, "alice", "second")["turns"] == 0
    finally:
        proxy.close()


def test_only_a_conversation_an_answer_made_is_deleted_when_it_keeps_nothing(dynamodb):
    """An edit counted down to nothing that then failed is let go, not deleted."""
    kept = local(dynamodb)
    conversation_id, _ = begun(kept, [user("q"), assistant("a")])
    kept.store.call("update_item", **kept._counted(conversation_id, 0, "", "next"))
    kept.release(conversation_id, "next")
    assert kept.meta(conversation_id, "-") is not None
    assert kept.take(conversation_id, "-", "again") is not None  # and the hold is free


def test_a_reopened_copy_matches_what_was_kept(dynamodb):
    """A client that opened a kept copy sends its files' turns as text: they still match."""
    from bedrock_relay.conversations import asked, differs

    kept = local(dynamodb)
    image = {"image": {"format": "png", "source": {"bytes": b"x"}}}
    document = {"document": {"format": "pdf", "name": "report", "source": {"bytes": b"x"}}}
    sent = [
        {"role": "user", "content": [image]},
        {"role": "assistant", "content": [{"text": "grey"}]},
        {"role": "user", "content": [{"text": "and this?"}, document]},
        {"role": "assistant", "content": [{"text": "a report"}]},
    ]
    _, held = begun(kept, asked(sent))
    reopened = [
        user("(files not kept: image)"),
        assistant("grey"),
        user("and this?"),
        assistant("a report"),
        user("thanks"),
    ]
    messages = [{"role": t["role"], "content": [{"text": t["content"]}]} for t in reopened]
    assert differs(held, asked(messages)) == 4


def test_a_new_conversation_survives_the_sdk_retrying_its_making(dynamodb):
    from bedrock_relay.conversations import new_id
    from bedrock_relay.store import StoreError

    kept = local(dynamodb)
    conversation_id = new_id()
    first = kept.create(conversation_id, "-", "t", "stream")
    assert kept.create(conversation_id, "-", "t", "stream") == first
    with pytest.raises(StoreError):
        kept.create(conversation_id, "-", "t", "another stream")


def test_an_answer_whose_hold_lapsed_writes_nothing(dynamodb):
    from bedrock_relay.store import StoreError

    kept = local(dynamodb)
    conversation_id, held = begun(kept, [user("q"), assistant("a")])
    # Its hold lapsed, and another answer took the conversation.
    kept.store.call(
        "update_item",
        Key={"pk": {"S": f"c#{conversation_id}"}, "sk": {"S": "m"}},
        UpdateExpression="SET busyStream = :other",
        ExpressionAttributeValues={":other": {"S": "other"}},
    )
    before = stored_items(dynamodb, conversation_id)
    long = [user(str(n)) if n % 2 else assistant(str(n)) for n in range(3, 243)]
    with pytest.raises(StoreError):
        kept.record(conversation_id, 2, long, held, "next", "m")  # chunked: too long for one
    with pytest.raises(StoreError):
        kept.record(conversation_id, 2, long[:2], held, "next", "m")  # one transaction
    assert stored_items(dynamodb, conversation_id) == before
