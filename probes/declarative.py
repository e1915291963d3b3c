"""Declarative flows: JSON/YAML steps that run through the same runner as Python flows.

Checks created through the API use these (code is never uploaded). A spec is a list whose items
are either a step with actions or a bare action (which becomes a step of its own)::

    - step: product
      actions:
        - goto: /demo/product/1                 # a path (relative to the target) or http(s) URL
        - click: "#add"                         # selector
        - fill: {selector: "#q", value: shoes}
        - press: {selector: "#q", key: Enter}
        - wait_for: ".results"                  # or {selector, state: visible|hidden|attached|detached, timeout: s}
        - assert_text: {selector: "#cart", text: "Added to cart."}   # optional timeout: s (default 5)
    - goto: /about                              # a step called "goto /about"

An action may also be written ``{action: click, selector: "#add"}``. Errors name the place:
``steps[2].actions[0]: unknown action 'hover'``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

if TYPE_CHECKING:
    from playwright.async_api import Page

    from probes.flow import FlowFn, StepFn

MAX_STEPS = 100
MAX_ACTIONS = 100


class DeclarativeError(ValueError):
    """An invalid spec; the message starts with where (``steps[1].actions[0].selector``)."""


class _Action(msgspec.Struct, forbid_unknown_fields=True):
    timeout: float | None = None  # seconds; default: the step timeout (assert_text: 5 s)


class Goto(_Action):
    url: str = ""


class Click(_Action):
    selector: str = ""


class Fill(_Action):
    selector: str = ""
    value: str = ""


class Press(_Action):
    selector: str = ""
    key: str = ""


class WaitFor(_Action):
    selector: str = ""
    state: Literal["attached", "detached", "visible", "hidden"] = "visible"


class AssertText(_Action):
    selector: str = ""
    text: str = ""


ACTIONS: dict[str, type[_Action]] = {
    "goto": Goto, "click": Click, "fill": Fill, "press": Press, "wait_for": WaitFor, "assert_text": AssertText,
}  # fmt: skip
# The argument a plain string stands for: {"click": "#add"} == {"click": {"selector": "#add"}}.
MAIN = {"goto": "url", "click": "selector", "wait_for": "selector"}
REQUIRED = {"goto": ("url",), "click": ("selector",), "fill": ("selector",), "press": ("selector", "key"),
            "wait_for": ("selector",), "assert_text": ("selector", "text")}  # fmt: skip


class Step(msgspec.Struct, frozen=True):
    name: str
    actions: tuple[_Action, ...]


class _StepSpec(msgspec.Struct, forbid_unknown_fields=True):
    step: str
    actions: list[Any]


def _convert_error(exc: msgspec.ValidationError, path: str) -> DeclarativeError:
    text = str(exc)
    where = ""
    if " - at `$" in text:
        text, at = text.split(" - at `$", 1)
        where = at.rstrip("`")
    elif text.startswith("Object contains unknown field"):
        field = text.split("`")[1] if "`" in text else "?"
        return DeclarativeError(f"{path}: unknown field {field!r}")
    return DeclarativeError(f"{path}{where}: {text}")


def _action(raw: Any, path: str) -> tuple[str, _Action]:
    if not isinstance(raw, dict):
        raise DeclarativeError(
            f"{path}: an action is a mapping such as {{click: '#buy'}}, not {type(raw).__name__}"
        )
    if "action" in raw:
        name, args = raw["action"], {k: v for k, v in raw.items() if k != "action"}
    elif len(raw) == 1:
        name, args = next(iter(raw.items()))
    else:
        raise DeclarativeError(
            f"{path}: an action has one key, its name (one of {', '.join(ACTIONS)}); got {', '.join(map(str, raw))}"
        )
    if name not in ACTIONS:
        raise DeclarativeError(f"{path}: unknown action {name!r} (known: {', '.join(ACTIONS)})")
    if isinstance(args, str) and name in MAIN:
        args = {MAIN[name]: args}
    if not isinstance(args, dict):
        raise DeclarativeError(f"{path}: {name} takes a mapping with {', '.join(REQUIRED[name])}")
    try:
        action = msgspec.convert(args, ACTIONS[name])
    except msgspec.ValidationError as exc:
        raise _convert_error(exc, path) from None
    for field in REQUIRED[name]:
        if not getattr(action, field):
            raise DeclarativeError(f"{path}.{field}: required for {name}")
    if action.timeout is not None and not 0 < action.timeout <= 600:
        raise DeclarativeError(f"{path}.timeout: must be between 0 and 600 seconds")
    if isinstance(action, Goto):
        scheme = urlsplit(action.url).scheme.lower()
        if scheme not in ("", "http", "https"):
            raise DeclarativeError(f"{path}.url: only http(s) URLs or paths, not {scheme}:")
    return name, action


def _label(name: str, action: _Action) -> str:
    arg = getattr(action, MAIN.get(name, "selector"), "")
    return f"{name} {arg}".strip()


def parse_steps(spec: Any) -> list[Step]:
    """Validate a spec (see module docs) into steps; raises :class:`DeclarativeError`."""
    if not isinstance(spec, list) or not spec:
        raise DeclarativeError("steps: must be a non-empty list of steps or actions")
    if len(spec) > MAX_STEPS:
        raise DeclarativeError(f"steps: at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for i, item in enumerate(spec):
        path = f"steps[{i}]"
        if isinstance(item, dict) and "step" in item:
            try:
                raw = msgspec.convert(item, _StepSpec)
            except msgspec.ValidationError as exc:
                raise _convert_error(exc, path) from None
            if not raw.step.strip():
                raise DeclarativeError(f"{path}.step: a step needs a name")
            if not raw.actions or len(raw.actions) > MAX_ACTIONS:
                raise DeclarativeError(f"{path}.actions: between 1 and {MAX_ACTIONS} actions")
            actions = tuple(_action(a, f"{path}.actions[{j}]")[1] for j, a in enumerate(raw.actions))
            steps.append(Step(raw.step.strip(), actions))
        else:
            name, action = _action(item, path)
            steps.append(Step(_label(name, action), (action,)))
    return steps


async def _assert_text(page: Page, action: AssertText) -> None:
    timeout = action.timeout or 5.0
    deadline = time.monotonic() + timeout
    locator = page.locator(action.selector).first
    actual: str | None = None
    while True:
        try:
            if await locator.count():
                actual = await locator.inner_text(timeout=1000)
                if action.text in actual:
                    return
        except Exception:  # noqa: S110 - the element went away between count and read: poll again
            pass
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    if actual is None:
        raise AssertionError(f"assert_text: no element matches {action.selector!r} after {timeout:g} s")
    raise AssertionError(
        f"assert_text: {action.selector!r} does not contain {action.text!r} after {timeout:g} s (its text: {actual[:200]!r})"
    )


async def run_action(page: Page, action: _Action) -> None:
    ms = None if action.timeout is None else action.timeout * 1000
    match action:
        case Goto():
            await page.goto(action.url, timeout=ms)
        case Click():
            await page.click(action.selector, timeout=ms)
        case Fill():
            await page.fill(action.selector, action.value, timeout=ms)
        case Press():
            await page.press(action.selector, action.key, timeout=ms)
        case WaitFor():
            await page.wait_for_selector(action.selector, state=action.state, timeout=ms)
        case AssertText():
            await _assert_text(page, action)


def flow_from_steps(spec: Sequence[Any]) -> FlowFn:
    """A flow function running ``spec``; validated now, so a bad spec fails before any run."""
    steps = parse_steps(list(spec) if isinstance(spec, tuple) else spec)

    async def flow(page: Page, step: StepFn) -> None:
        for s in steps:
            async with step(s.name):
                for action in s.actions:
                    await run_action(page, action)

    flow.steps = steps  # type: ignore[attr-defined]
    return flow


def load_steps_file(path: str | Path) -> FlowFn:
    """A ``.yml``/``.yaml``/``.json`` file holding a spec (or a mapping with a ``steps`` key)."""
    path = Path(path)
    loader: Callable[[str], Any] = json.loads if path.suffix == ".json" else yaml.safe_load
    try:
        data = loader(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DeclarativeError(f"cannot read: {exc}") from None
    if isinstance(data, dict) and "steps" in data:
        data = data["steps"]
    return flow_from_steps(data)
