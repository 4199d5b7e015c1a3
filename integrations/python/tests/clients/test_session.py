"""The ``Session`` handle against a real sessiond: Django's dictionary,
flags and expiry, saves that patch only what changed, ``cycle_key``,
``flush``, and the same through ``AsyncClient``."""

import asyncio
import datetime

import pytest

from sessiond_client import Session, SessionSettings, UpdateError

UTC = datetime.timezone.utc


def stored(client, key):
    loaded = client.load(key)
    return None if loaded is None else loaded.data


def test_a_new_session_is_created_on_save(client):
    session = Session(client)
    assert session.session_key is None and session.is_empty()
    assert not session.accessed and not session.modified
    session["user"] = "ada"
    assert session.modified and session.accessed
    session.save()
    assert stored(client, session.session_key) == {"user": "ada"}


def test_the_dictionary_behaves_as_djangos(client):
    key = client.create({"a": 1, "b": [1], "c": None})
    session = Session(client, key)
    assert not session.accessed  # nothing read yet, nothing loaded
    assert session["a"] == 1 and session.accessed and not session.modified
    assert session.get("missing", 7) == 7 and "b" in session and "zz" not in session
    assert sorted(session.keys()) == ["a", "b", "c"] and len(session) == 3
    assert dict(session.items()) == {"a": 1, "b": [1], "c": None}
    assert list(session.values()) == [1, [1], None]
    assert session.pop("missing", None) is None and not session.modified
    assert session.setdefault("a", 9) == 1 and not session.modified
    assert session.setdefault("d", 4) == 4 and session.modified
    del session["c"]
    with pytest.raises(KeyError):
        session["c"]
    assert session.pop("b") == [1]
    session.save()
    assert stored(client, key) == {"a": 1, "d": 4}
    session.clear()
    session["only"] = True
    session.save()
    assert stored(client, key) == {"only": True}


def test_an_invalid_or_unknown_key_is_a_fresh_session(client):
    for key in ["short", "NOT-VALID-KEY-AT-ALL", "k" * 32]:
        session = Session(client, key)
        assert dict(session) == {}
        assert session.session_key is None  # never reuse a key the browser chose
        session["n"] = 1
        session.save()
        assert session.session_key not in (None, key)


def test_two_handles_on_one_key_keep_each_others_members(client):
    key = client.create({"visits": 1, "flash": "hi"})
    first, second = Session(client, key), Session(client, key)
    assert first["visits"] == second["visits"] == 1  # both loaded, as two requests
    first["cart"] = ["book"]
    second["theme"] = "dark"
    del second["flash"]
    first.save()
    second.save()
    assert stored(client, key) == {"visits": 1, "cart": ["book"], "theme": "dark"}


def test_a_member_changed_in_place_is_saved(client):
    key = client.create({"cart": ["book"], "n": True})
    session = Session(client, key)
    session["cart"].append("pen")
    session["n"] = 1
    session.save()
    assert stored(client, key) == {"cart": ["book", "pen"], "n": 1}


def test_a_session_deleted_meanwhile_is_not_brought_back(client):
    key = client.create({"a": 1})
    session = Session(client, key)
    session["b"] = 2
    client.delete(key)
    with pytest.raises(UpdateError) as raised:
        session.save()
    assert raised.value.rpc == "Patch"
    assert client.exists(key) is False


def test_cycle_key_moves_the_session_in_one_call(client):
    key = client.create({"cart": [1]})
    session = Session(client, key)
    session["user"] = 7
    session.cycle_key()
    assert session.session_key != key and client.exists(key) is False
    assert stored(client, session.session_key) == {"cart": [1], "user": 7}
    assert session.modified
    # Later saves patch the new key.
    other = Session(client, session.session_key)
    other["theme"] = "dark"
    other.save()
    session["after"] = True
    session.save()
    assert stored(client, session.session_key) == {
        "cart": [1],
        "user": 7,
        "theme": "dark",
        "after": True,
    }

    fresh = Session(client)
    fresh.cycle_key()  # no key yet: creates, as Django's cycle_key
    assert client.exists(fresh.session_key)


def test_flush_deletes_and_forgets_the_key(client):
    key = client.create({"user": 7})
    session = Session(client, key)
    session.flush()
    assert session.session_key is None and session.is_empty()
    assert client.exists(key) is False


def test_expiry_follows_django(client):
    settings = SessionSettings(age=600)
    session = Session(client, settings=settings)
    assert session.get_expiry_age() == 600
    assert not session.get_expire_at_browser_close()
    session.set_expiry(60)
    assert session["_session_expiry"] == 60 and session.get_expiry_age() == 60
    session.set_expiry(0)
    assert session.get_expire_at_browser_close() and session.get_expiry_age() == 600
    moment = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    session.set_expiry(moment)
    assert session["_session_expiry"] == moment.isoformat()  # as Django stores it
    assert session.get_expiry_date() == moment
    session.set_expiry(datetime.timedelta(hours=1))
    assert 3590 < session.get_expiry_age() <= 3600
    session.set_expiry(None)
    assert "_session_expiry" not in session
    session.set_expiry(120)
    session.save()
    expire = client.load(session.session_key).expire_date
    assert abs((expire - datetime.datetime.now(UTC)).total_seconds() - 120) < 5
    browser = Session(client, settings=SessionSettings(expire_at_browser_close=True))
    assert browser.get_expire_at_browser_close()


def test_the_async_handle_shares_the_same_steps(make_async_client):
    async def scenario():
        client = make_async_client()
        key = await client.create({"visits": 1})
        first, second = Session(client, key), Session(client, key)
        with pytest.raises(RuntimeError, match="aload"):
            first["visits"]
        await first.aload()
        await second.aload()
        first["cart"] = ["book"]
        second["theme"] = "dark"
        await first.asave()
        await second.asave()
        assert (await client.load(key)).data == {"visits": 1, "cart": ["book"], "theme": "dark"}
        await first.acycle_key()
        assert not await client.exists(key)
        second["x"] = 1  # loaded before the key moved, as a request in flight
        with pytest.raises(UpdateError):
            await second.asave()
        new_key = first.session_key
        await first.aflush()
        assert not await client.exists(new_key)
        with pytest.raises(TypeError, match="AsyncClient"):
            first.save()
        await client.aclose()

    asyncio.run(scenario())
