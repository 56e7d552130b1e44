"""FieldsV1 objects built and edited directly, without going through path sets.

Every write records managedFields, and most writes either create an object
(the owner gets every field of it) or change a few fields (the owners of those
fields lose them, the writer gains them). Decoding every manager's FieldsV1
into a set of paths and encoding it back costs more than the rest of the
bookkeeping together, so these functions work on the FieldsV1 tries as they
are stored.

They keep a trie in the one spelling that `fieldsets.encode` writes
("canonical": path elements in canonical form and sorted, `.` first and only
next to children), so a result is byte for byte what the path-set functions
would produce. `is_canonical` says whether a stored trie is in that form;
callers fall back to the path-set functions when it is not.
"""

from __future__ import annotations

import functools
from typing import Any

from timonel.api.patch.fieldsets import STRIPPED, Path, canonical_pe, item_pe, pe_sort_key
from timonel.api.patch.shapes import STRUCT, Shape


def _sort_key(pe: str) -> tuple[int, str]:
    # The order of fieldsets.encode, with "." (a member with children) first.
    if pe == ".":
        return (-1, "")
    return pe_sort_key(pe)


def created_fields(obj: Any, shape: Shape) -> dict[str, Any]:
    """FieldsV1 of every field of `obj` against nothing, less the stripped metadata.

    The same as `encode(compare({}, obj, shape).added - STRIPPED)`, in one walk.
    """
    if not isinstance(obj, dict) or not obj or not shape.granular_object:
        return {}  # a leaf at the root: compare reports only the root path, never kept
    root = _object_node(obj, shape, False)
    for path in STRIPPED:
        node = root.get(path[0])
        if node is not None and (len(path) == 1 or path[1] in node):
            discard(root, path)
    return root


# The nodes of a non-empty object or list appearing as a whole, as
# fieldsets.all_paths reports them: every leaf, and the object or item itself
# when `member` (list items, map entries, undeclared fields).

def _object_node(value: dict[str, Any], shape: Shape, member: bool) -> dict[str, Any]:
    out: dict[str, Any] = {".": {}} if member else {}
    child = shape.child
    for k in sorted(value):
        v = value[k]
        if v and isinstance(v, dict):
            s, entry = child(k)
            out["f:" + k] = (_object_node(v, s, entry or s.kind != STRUCT)
                             if s.granular_object else {})
        elif v and isinstance(v, list):
            s, entry = child(k)
            out["f:" + k] = _list_node(v, s, entry) if s.granular_list else {}
        else:
            out["f:" + k] = {}
    return out


def _list_node(value: list[Any], shape: Shape, member: bool) -> dict[str, Any]:
    item_shape = shape.item()
    children: dict[str, Any] = {}
    for i, item in enumerate(value):
        pe = item_pe(shape, item, i, (), False)
        if pe in children:
            continue  # the first item wins, as in index_items
        if item and isinstance(item, dict):
            children[pe] = (_object_node(item, item_shape, True)
                            if item_shape.granular_object else {})
        elif item and isinstance(item, list):
            children[pe] = _list_node(item, item_shape, True) if item_shape.granular_list else {}
        else:
            children[pe] = {}
    out: dict[str, Any] = {".": {}} if member else {}
    for pe in sorted(children, key=_sort_key):
        out[pe] = children[pe]
    return out


def _keys_verdict(keys: tuple[str, ...]) -> int:
    """0: not canonical; 1: canonical path elements in order; 2: the same after a '.'."""
    # The key lists of FieldsV1 nodes repeat from object to object; long ones
    # (big maps and lists) are rare and would make the cache heavy.
    return _small_keys_verdict(keys) if len(keys) <= 16 else _verdict(keys)


@functools.lru_cache(maxsize=8192)
def _small_keys_verdict(keys: tuple[str, ...]) -> int:
    return _verdict(keys)


def _verdict(keys: tuple[str, ...]) -> int:
    dot = bool(keys) and keys[0] == "."
    rest = keys[1:] if dot else keys
    prev: tuple[int, str] | None = None
    for pe in rest:
        try:
            if canonical_pe(pe) != pe:
                return 0
        except ValueError:
            return 0
        key = _sort_key(pe)
        if prev is not None and not prev < key:
            return 0
        prev = key
    if dot:
        return 2 if rest else 0
    return 1


def is_canonical(fields_v1: Any) -> bool:
    """Is `fields_v1` exactly what `encode(decode(fields_v1))` gives?"""
    if type(fields_v1) is not dict or _keys_verdict(tuple(fields_v1)) != 1:
        return False
    cached = _small_keys_verdict
    stack = [fields_v1]
    while stack:
        for child in stack.pop().values():
            if type(child) is not dict:
                return False
            if child:
                keys = tuple(child)
                v = cached(keys) if len(keys) <= 16 else _verdict(keys)
                # A "." must hold {} (anything else reads the same but is written as {}).
                if v == 1 or (v == 2 and child["."] == {}):
                    stack.append(child)
                else:
                    return False
    return True


def discard(trie: dict[str, Any], path: Path) -> None:
    """Remove `path` from the canonical trie (in place); a no-op if it is not there."""
    if not path:
        return
    stack: list[tuple[dict[str, Any], str]] = []
    node = trie
    for pe in path[:-1]:
        child = node.get(pe)
        if not child:  # absent, or a leaf with nothing below it
            return
        stack.append((node, pe))
        node = child
    last = path[-1]
    target = node.get(last)
    if target is None:
        return
    if target:
        # A member with children stays as the parent of those; a non-member
        # with children was never in the set.
        target.pop(".", None)
        return
    del node[last]
    while True:
        if not node:
            if not stack:
                return
            parent, pe = stack.pop()
            del parent[pe]
            node = parent
            continue
        if len(node) == 1 and "." in node:
            del node["."]  # a member whose last child went: a leaf again
        return


def add(trie: dict[str, Any], path: Path) -> None:
    """Add `path` to the canonical trie (in place)."""
    if not path:
        return
    node = trie
    for pe in path[:-1]:
        child = node.get(pe)
        if child is None:
            child = {}
            _insert(node, pe, child)
        elif not child:
            child["."] = {}  # a leaf member gets children: it stays a member
        node = child
    last = path[-1]
    target = node.get(last)
    if target is None:
        _insert(node, last, {})
    elif target and "." not in target:
        items = list(target.items())
        target.clear()
        target["."] = {}
        target.update(items)


def _insert(node: dict[str, Any], pe: str, child: dict[str, Any]) -> None:
    if not node or _sort_key(next(reversed(node))) < _sort_key(pe):
        node[pe] = child
        return
    items = sorted([*node.items(), (pe, child)], key=lambda kv: _sort_key(kv[0]))
    node.clear()
    node.update(items)
