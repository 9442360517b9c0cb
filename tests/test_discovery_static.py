"""meshcore.Endpoint, StaticDiscovery and FileDiscovery: values, watch(), reloads and bad files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import meshcore
from meshcore import ConfigError, DiscoveryError, Endpoint
from meshcore.discovery import (
    DiscoverySource,
    EndpointSet,
    FileDiscovery,
    StaticDiscovery,
    parse_endpoint,
)
from watching import Watcher, eventually, run

# -- Endpoint --------------------------------------------------------------------------------


def test_endpoint_is_a_hashable_value() -> None:
    a = Endpoint("10.0.0.1", 80, 2, {"zone": "a"})
    b = Endpoint("10.0.0.1", 80, 2, {"zone": "a"})
    assert a == b and hash(a) == hash(b)
    assert len({a, b, Endpoint("10.0.0.1", 80, 2)}) == 2
    assert a.metadata == {"zone": "a"}
    assert meshcore.Endpoint is Endpoint
    with pytest.raises(TypeError):
        a.metadata["zone"] = "b"  # type: ignore[index]  # immutable on purpose
    with pytest.raises(AttributeError):
        a.port = 81  # type: ignore[misc]  # frozen on purpose
    assert Endpoint("::1", 80).address == "[::1]:80"
    assert Endpoint("h", 1).address == "h:1"


def test_endpoint_metadata_is_copied() -> None:
    meta = {"k": "v"}
    e = Endpoint("h", 1, metadata=meta)
    meta["k"] = "changed"
    assert e.metadata["k"] == "v"


@pytest.mark.parametrize(
    ("host", "port", "weight", "meta"),
    [
        ("", 80, 1, {}),
        ("h", 0, 1, {}),
        ("h", 65536, 1, {}),
        ("h", True, 1, {}),
        ("h", 80, 0, {}),
        ("h", 80, 1.5, {}),
        ("h", 80, 1, {"k": 1}),
        ("h", 80, 1, ["not", "a", "mapping"]),
    ],
)
def test_endpoint_rejects_bad_values(host: str, port: int, weight: int, meta: object) -> None:
    with pytest.raises(ConfigError):
        Endpoint(host, port, weight, meta)  # type: ignore[arg-type]  # bad on purpose


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "10.0.0.1", "::1"]),
            st.integers(1, 65535),
            st.integers(1, 5),
            st.dictionaries(st.sampled_from("xyz"), st.sampled_from(["1", "2"]), max_size=2),
        ),
        max_size=8,
    )
)
def test_endpoint_sets_compare_by_value(rows: list[tuple[str, int, int, dict[str, str]]]) -> None:
    one = frozenset(Endpoint(h, p, w, m) for h, p, w, m in rows)
    two = frozenset(Endpoint(h, p, w, dict(reversed(list(m.items())))) for h, p, w, m in rows)
    assert one == two and hash(one) == hash(two)


def test_parse_endpoint_forms() -> None:
    assert parse_endpoint("10.0.0.1:80") == Endpoint("10.0.0.1", 80)
    assert parse_endpoint("[::1]:80") == Endpoint("::1", 80)
    assert parse_endpoint({"host": "h", "port": 1, "weight": 3}) == Endpoint("h", 1, 3)
    for bad in ["h", "h:x", "::1:80", {"host": "h"}, {"host": "h", "port": 1, "x": 1}, 7]:
        with pytest.raises(ConfigError):
            parse_endpoint(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "10.0.0.2:²",  # str.isdigit() is True, int() refuses it
        "10.0.0.2:٣٣",  # Arabic-Indic digits: int() accepts them, an address must not
        "h:" + "9" * 5000,  # beyond int()'s limit on digits
        "h:99999999999",
        ":80",
        "[]:80",
        "[::1:80",
        "::1]:80",
        "a]:80",
        "[a]b]:80",
        {"host": "h", "port": 1, 2: "mixed key types", "x": 1},
        {"host": "h", "port": "80"},
        {"host": "h", "port": 80, "metadata": [1]},
        {"host": "h", "port": 80, "metadata": {"k": {"nested": 1}}},
        {"host": ["h"], "port": 80},
    ],
)
def test_parse_endpoint_raises_only_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_endpoint(bad)


@given(st.text(max_size=30) | st.builds(lambda h, p: f"{h}:{p}", st.text(max_size=10), st.text()))
def test_parse_endpoint_never_raises_anything_else(text: str) -> None:
    try:
        ep = parse_endpoint(text)
    except ConfigError:
        return
    assert 1 <= ep.port <= 65535 and ep.host


# -- StaticDiscovery -------------------------------------------------------------------------


def test_static_watch_yields_once_and_ends_on_close() -> None:
    async def main() -> list[EndpointSet]:
        seen = []
        src = StaticDiscovery(["10.0.0.1:80", Endpoint("10.0.0.2", 80, 5)])
        assert await src.resolve() == {Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80, 5)}
        async with src as d:
            it = Watcher(d.watch())
            seen.append(await it.next())
            with pytest.raises(asyncio.TimeoutError):
                await it.next(0.2)  # nothing changes
            assert not d.stale
        assert await it.ended()  # closing ends the iteration
        return seen

    assert run(main()) == [{Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80, 5)}]


def test_static_rejects_bad_entries_and_watch_needs_context() -> None:
    with pytest.raises(ConfigError):
        StaticDiscovery(["10.0.0.1"])

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await anext(StaticDiscovery([]).watch())

    run(main())


# -- FileDiscovery ---------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    """Replace the file atomically, as a config manager would (and so the inode changes)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_json_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "eps.json"
    write(path, json.dumps(["10.0.0.1:80"]))

    async def main() -> None:
        async with FileDiscovery(path, interval=0.05) as d:
            it = Watcher(d.watch())
            assert await it.next() == {Endpoint("10.0.0.1", 80)}
            write(path, json.dumps({"endpoints": ["10.0.0.1:80", "10.0.0.2:80"]}))
            assert await it.next() == {Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)}
            # Same set written again (another order): not yielded again.
            write(path, json.dumps(["10.0.0.2:80", "10.0.0.1:80"]))
            write(path, json.dumps([{"host": "10.0.0.3", "port": 80, "weight": 2}]))
            assert await it.next() == {Endpoint("10.0.0.3", 80, 2)}

    run(main())


def test_file_yaml(tmp_path: Path) -> None:
    path = tmp_path / "eps.yaml"
    path.write_text(
        "endpoints:\n  - 10.0.0.1:80\n  - host: ::1\n    port: 81\n    metadata: {zone: b}\n"
    )
    got = run(FileDiscovery(path).resolve())
    assert got == {Endpoint("10.0.0.1", 80), Endpoint("::1", 81, 1, {"zone": "b"})}


def test_file_bad_entries_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "eps.json"
    path.write_text(json.dumps(["10.0.0.1:80", "nope", {"host": "h", "port": 0}, 5]))
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        got = run(FileDiscovery(path).resolve())
    assert got == {Endpoint("10.0.0.1", 80)}
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3
    assert "#1" in caplog.text and "#2" in caplog.text and "#3" in caplog.text


def test_file_one_malformed_entry_costs_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "eps.yaml"
    path.write_text(
        '- "10.0.0.1:80"\n- "10.0.0.2:\u00b2"\n- {host: h, port: 1, 2: x}\n- "[::1]:81"\n'
    )
    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        got = run(FileDiscovery(path).resolve())
    assert got == {Endpoint("10.0.0.1", 80), Endpoint("::1", 81)}
    assert "#1" in caplog.text and "#2" in caplog.text


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("eps.json", '[\n  "10.0.0.1:80",\n  oops\n]', ":3:3"),
        ("eps.yaml", "endpoints:\n  - a:1\n  - [unclosed\n", ":4:1"),
        ("eps.json", '{"not_endpoints": 1}', ""),
    ],
)
def test_file_bad_document_raises_with_line(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DiscoveryError) as info:
        run(FileDiscovery(path).resolve())
    assert f"{path}{where}:" in str(info.value)


def test_file_bad_or_missing_keeps_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "eps.json"
    write(path, json.dumps(["10.0.0.1:80"]))
    good = frozenset({Endpoint("10.0.0.1", 80)})

    async def main() -> None:
        async with FileDiscovery(path, interval=0.05, backoff_initial=0.05, backoff_max=0.1) as d:
            it = Watcher(d.watch())
            assert await it.next() == good
            write(path, '[\n"10.0.0.1:80",\n')  # truncated
            await eventually(lambda: d.stale)
            assert d.current == good
            assert ":3:1" in caplog.text  # the parser's line and column
            path.unlink()
            await asyncio.sleep(0.2)
            assert d.stale and d.current == good
            write(path, json.dumps(["10.0.0.1:80", "10.0.0.9:80"]))
            assert await it.next() == good | {Endpoint("10.0.0.9", 80)}
            assert not d.stale

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert "recovered" in caplog.text


def test_file_missing_at_start_then_created(tmp_path: Path) -> None:
    path = tmp_path / "later.json"

    async def main() -> None:
        async with FileDiscovery(path, interval=0.05, backoff_initial=0.05, backoff_max=0.1) as d:
            it = Watcher(d.watch())
            await eventually(lambda: d.stale)
            assert d.current is None
            write(path, '["10.0.0.1:80"]')
            assert await it.next() == {Endpoint("10.0.0.1", 80)}
            assert not d.stale
        with pytest.raises(DiscoveryError):
            await FileDiscovery(tmp_path / "absent.json").resolve()

    run(main())


def test_two_watchers_see_the_same_sets(tmp_path: Path) -> None:
    path = tmp_path / "eps.json"
    write(path, '["10.0.0.1:80"]')

    async def main() -> None:
        async with FileDiscovery(path, interval=0.05) as d:
            a, b = Watcher(d.watch()), Watcher(d.watch())
            first = await a.next()
            assert await b.next() == first
            write(path, '["10.0.0.2:80"]')
            assert await a.next() == await b.next() == {Endpoint("10.0.0.2", 80)}

    run(main())


class Flaky(DiscoverySource):
    """A source whose reads follow a script: a set, or an exception to raise."""

    def __init__(self, script: list[EndpointSet | Exception]) -> None:
        super().__init__(backoff_initial=0.01, backoff_max=0.02)
        self.script = script
        self.reads = 0

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        step = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        if isinstance(step, Exception):
            raise step
        return step, 0.01


def test_unexpected_errors_never_kill_the_watcher(caplog: pytest.LogCaptureFixture) -> None:
    one = frozenset({Endpoint("10.0.0.1", 80)})
    two = frozenset({Endpoint("10.0.0.2", 80)})

    async def main() -> None:
        src = Flaky([one, KeyError("a bug in a source"), DiscoveryError("down"), two])
        async with src as d:
            it = Watcher(d.watch())
            assert await it.next() == one
            assert await it.next() == two
            assert not d.stale and src.reads >= 4

    with caplog.at_level(logging.WARNING, "meshcore.discovery"):
        run(main())
    assert "unexpected error" in caplog.text and "KeyError" in caplog.text


def test_a_slow_consumer_gets_the_newest_set() -> None:
    sets = [frozenset({Endpoint("10.0.0.1", p)}) for p in range(1, 6)]

    async def main() -> None:
        async with Flaky(list(sets)) as d:
            it = d.watch()
            assert await anext(it) == sets[0]
            await eventually(lambda: d.current == sets[-1])  # every set went by meanwhile
            assert await anext(it) == sets[-1]

    run(main())


class Dying(DiscoverySource):
    """A source whose background task dies (a bug) after publishing its first set."""

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        return frozenset({Endpoint("10.0.0.1", 80)}), None

    async def _run(self) -> None:
        await self._publish((await self._fetch())[0])
        raise RuntimeError("the background task died")


def test_close_wakes_watchers_when_the_task_died(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        d = await Dying().__aenter__()
        it = Watcher(d.watch())
        assert await it.next() == {Endpoint("10.0.0.1", 80)}
        task = d._task
        assert task is not None
        await asyncio.wait({task})
        await d.aclose()  # logs the task's exception instead of raising it
        assert await it.ended()

    with caplog.at_level(logging.ERROR, "meshcore.discovery"):
        run(main())
    assert "the background task had died" in caplog.text
    assert "RuntimeError: the background task died" in caplog.text


class SlowToStop(DiscoverySource):
    """A source whose background task, once cancelled, waits for ``release`` before it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def _fetch(self) -> tuple[EndpointSet, float | None]:
        return frozenset({Endpoint("10.0.0.1", 80)}), 0.0

    async def _poll(self) -> tuple[EndpointSet | None, float | None]:
        if self.current is None:
            return await self._fetch()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.release.wait())
        raise AssertionError("not reached")


def test_close_does_not_swallow_a_cancellation_of_the_caller() -> None:
    async def main() -> None:
        d = await SlowToStop().__aenter__()
        it = Watcher(d.watch())
        assert await it.next() == {Endpoint("10.0.0.1", 80)}
        # aclose() waits for the task, which waits for `release`: the caller's timeout expires
        # meanwhile, and must be seen by the caller as a timeout.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await d.aclose()
        assert await it.ended()  # the watchers were woken all the same
        assert not d.running
        d.release.set()

    run(main())
