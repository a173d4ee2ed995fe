"""The process pool (``executor="processes"``): what it does to be quick.

A step's function travels to a worker once and is kept there; a function that
does not load is sent again; workers start when an attempt needs one (a chain
starts one); a worker that died between attempts is replaced before the next
one; messages of every size come through.  Each case runs in a child process
with a timeout (``support.run_child``), so that a hang fails the test.
"""

from support import run_child


def case(name: str, *args: object, twin: "str | None", timeout: float = 60.0) -> object:
    call = f"processsteps.case_{name}({', '.join(map(repr, args))})"
    return run_child(f"import json, processsteps\nprint(json.dumps({call}))", timeout, twin)


def test_a_function_travels_to_a_worker_once_and_is_kept_there(twin) -> None:
    out = case("function_sent_once", 1, twin=twin.TWIN)
    assert len({pid for pid, _, _ in out}) == 1
    assert [loads for _, loads, _ in out] == [1] * 6  # loaded once, by the first attempt
    assert sorted(calls for _, _, calls in out) == [1, 2, 3, 4, 5, 6]  # the same object every time


def test_each_worker_loads_a_function_once(twin) -> None:
    out = case("function_sent_once", 2, twin=twin.TWIN)
    per_process: dict = {}
    for pid, loads, calls in out:
        per_process.setdefault(pid, []).append((loads, calls))
    assert 1 <= len(per_process) <= 2
    for seen in per_process.values():
        assert {loads for loads, _ in seen} == {1}
        assert sorted(calls for _, calls in seen) == list(range(1, len(seen) + 1))


def test_a_function_that_did_not_load_is_sent_again(twin, tmp_path) -> None:
    out = case("reload_after_a_failed_load", str(tmp_path), twin=twin.TWIN)
    assert out == {"status": "succeeded", "attempts": 2, "output": "loaded", "error": "None"}


def test_workers_start_when_attempts_need_them(twin) -> None:
    assert case("workers_started", 2, twin=twin.TWIN) == {"chain": 1, "wide": 2}
    assert case("workers_started", 4, twin=twin.TWIN) == {"chain": 1, "wide": 4}


def test_a_worker_that_died_between_attempts_is_replaced(twin) -> None:
    out = case("idle_worker_died", twin=twin.TWIN)
    assert out == {"ok": [True, True], "new process": True, "left": 0}


def test_messages_of_every_size_come_through() -> None:
    out = case("message_sizes", twin=None, timeout=120.0)  # (the kernel plays no part)
    assert out == [True] * len(out)
