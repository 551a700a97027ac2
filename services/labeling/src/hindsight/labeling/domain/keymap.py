"""The keyboard map: which key triggers which action in the labeling page.

Configured by ``HINDSIGHT_LABELING_KEYMAP``, a JSON object of action → key or list of
keys (``KeyboardEvent.key`` names: ``"y"``, ``"ArrowRight"``, ``" "`` for space). Actions
given there replace their default keys; the others keep theirs. A key bound to two
actions is refused at start-up, so a typo cannot make Y silently reject.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["ACTIONS", "DEFAULT_KEYMAP", "KeymapError", "key_index", "parse_keymap"]

DEFAULT_KEYMAP: Mapping[str, tuple[str, ...]] = {
    "approve": ("y",),
    "reject": ("n",),
    "review": ("r",),
    "comment": ("c",),
    "next": ("j", "ArrowRight", "ArrowDown"),
    "prev": ("k", "ArrowLeft", "ArrowUp"),
    "next_page": ("]", "PageDown"),
    "prev_page": ("[", "PageUp"),
    "undo": ("u",),
    "select": ("x", " "),
    "similar": ("s",),
    "toggle_image": ("t",),
    "open": ("Enter",),
    "close": ("Escape",),
    "grade_a": ("1",),
    "grade_b": ("2",),
    "grade_c": ("3",),
    "grade_d": ("4",),
}
ACTIONS: tuple[str, ...] = tuple(DEFAULT_KEYMAP)


class KeymapError(ValueError):
    """The configured keymap cannot work (unknown action, bad key, key used twice)."""


def _normalise(key: str) -> str:
    # Single characters compare case-insensitively (Shift+Y is still approve).
    return key.lower() if len(key) == 1 else key


def _keys(action: str, value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise KeymapError(f"{action}: expected a key or a non-empty list of keys")
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str) or item == "":
            raise KeymapError(f"{action}: keys are non-empty strings, got {item!r}")
        keys.append(_normalise(item))
    return keys


def parse_keymap(raw: object) -> dict[str, list[str]]:
    """Defaults overridden by ``raw`` (JSON text or a mapping); action → keys."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        overrides: Mapping[str, object] = {}
    elif isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KeymapError(f"keymap is not valid JSON: {exc.msg}") from exc
        if not isinstance(parsed, dict):
            raise KeymapError("keymap must be a JSON object of action -> key(s)")
        overrides = parsed
    elif isinstance(raw, Mapping):
        overrides = raw
    else:
        raise KeymapError("keymap must be a JSON object of action -> key(s)")
    unknown = sorted(set(overrides) - set(ACTIONS))
    if unknown:
        raise KeymapError(f"unknown action(s) {', '.join(unknown)}; known: {', '.join(ACTIONS)}")
    keymap = {action: list(keys) for action, keys in DEFAULT_KEYMAP.items()}
    for action, value in overrides.items():
        keymap[action] = _keys(action, value)
    key_index(keymap)  # raises on a key bound twice
    return keymap


def key_index(keymap: Mapping[str, list[str]]) -> dict[str, str]:
    """Key → action; raises :class:`KeymapError` when a key is bound to two actions."""
    index: dict[str, str] = {}
    for action, keys in keymap.items():
        for key in keys:
            other = index.get(key)
            if other is not None and other != action:
                raise KeymapError(f"key {key!r} is bound to both {other} and {action}")
            index[key] = action
    return index
