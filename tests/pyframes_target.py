"""A CPython process whose threads wait inside the shapes of frames a stack reader must get right: a method
(qualified name), a nested function, a lambda, a generator and a coroutine (frames owned by their objects),
deep recursion, a function and a thread whose names are not ASCII, a line far below its function's first
line (the location table's long form), a thread made without `threading` (no Python name), and code
compiled from a string (its own file name). Prints its pid, then waits for stdin to close."""

from __future__ import annotations

import _thread
import asyncio
import os
import sys
import threading

BLOCK = threading.Event()
READY: list[str] = []


class Service:
    def handle(self) -> None:
        READY.append("method")
        BLOCK.wait()


def outer() -> None:
    def inner() -> None:
        READY.append("nested")
        BLOCK.wait()
    inner()


def recurse(n: int) -> None:
    if n:
        recurse(n - 1)
    else:
        READY.append("deep")
        BLOCK.wait()


def generator() -> object:
    READY.append("generator")
    BLOCK.wait()
    yield 1


async def coroutine() -> None:
    READY.append("coroutine")
    BLOCK.wait()


def far_line() -> None:
    x = 0
    # Many lines between the first line and the wait, so the delta needs the long form.
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    x += 1
    READY.append("far")
    BLOCK.wait()


def ünïcödé_函数() -> None:
    READY.append("unicode")
    BLOCK.wait()


EXEC_SOURCE = "def from_string():\n    READY.append('exec')\n    BLOCK.wait()\n"


def main() -> None:
    namespace: dict[str, object] = {"READY": READY, "BLOCK": BLOCK}
    exec(compile(EXEC_SOURCE, "<generated>", "exec"), namespace)
    targets = [
        ("svc", Service().handle), ("nest", outer), ("lam", lambda: [READY.append("lambda"), BLOCK.wait()]),
        ("deep", lambda: recurse(60)), ("gen", lambda: next(iter(generator()))),  # type: ignore[call-overload]
        ("coro", lambda: asyncio.run(coroutine())), ("far", far_line), ("名前-θ", ünïcödé_函数),
        ("exec", namespace["from_string"]),
    ]
    for name, fn in targets:
        threading.Thread(target=fn, name=name, daemon=True).start()
    _thread.start_new_thread(lambda: [READY.append("raw"), BLOCK.wait()], ())
    while len(READY) < len(targets) + 1:
        threading.Event().wait(0.005)
    threading.Event().wait(0.05)
    print(os.getpid(), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
