"""Checking that the method table, the ``.capnp`` schemas and the ``interfaces`` ABCs agree.

``describe`` reads the loaded schemas into plain data (JSON-able, so a test can load
possibly broken schemas in a subprocess); ``disagreements`` compares that data and the
ABCs with the table and lists every mismatch as one line.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, TypedDict

from ._methods import Interface, Method, all_methods
from ._schema import Schemas

CONTEXT_TYPE = "Context"  # libmultiprocess's Proxy.Context, the first parameter by convention


class MethodShape(TypedDict):
    """A schema method: ordinal, and (name, type) of each parameter and result field."""

    ordinal: int
    params: list[tuple[str, str]]
    results: list[tuple[str, str]]


Shapes = dict[str, dict[str, MethodShape]]
"""Interface name -> capnp method name -> its shape."""


def describe(schemas: Schemas) -> Shapes:
    """Return the shape of every interface declared at the top level of each schema file."""
    shapes: Shapes = {}
    for attr in (f.name for f in fields(schemas) if f.name != "loader"):
        module = getattr(schemas, attr)
        for nested in module.schema.node.nestedNodes:
            node = schemas.loader.get(nested.id).node
            if node.which() == "interface":
                shapes[str(nested.name)] = _interface_shape(schemas.loader, node)
    return shapes


def superclasses(schemas: Schemas) -> dict[str, list[str]]:
    """Return, for every top-level interface of each schema file, the names of the
    interfaces it extends (capnp ``extends``); empty lists for the others."""
    supers: dict[str, list[str]] = {}
    for attr in (f.name for f in fields(schemas) if f.name != "loader"):
        for nested in getattr(schemas, attr).schema.node.nestedNodes:
            node = schemas.loader.get(nested.id).node
            if node.which() == "interface":
                supers[str(nested.name)] = [
                    str(schemas.loader.get(sup.id).node.displayName).rsplit(":", 1)[-1]
                    for sup in node.interface.superclasses]
    return supers


def inheritance_disagreements(interfaces: tuple[Interface, ...],
                              supers: dict[str, list[str]]) -> list[str]:
    """Return one line per interface whose table ``extends`` differs from what its
    schema extends (``supers``, from ``superclasses``); empty when they agree."""
    problems: list[str] = []
    for interface in interfaces:
        table = [] if interface.extends is None else [interface.extends]
        schema = supers.get(interface.name, [])
        if table != schema:
            problems.append(f"{interface.name}: extends {table} in the table, "
                            f"{schema} in the schema")
    return problems


def _interface_shape(loader: Any, node: Any) -> dict[str, MethodShape]:
    shape: dict[str, MethodShape] = {}
    for ordinal, method in enumerate(node.interface.methods):
        shape[str(method.name)] = MethodShape(
            ordinal=ordinal,
            params=_struct_fields(loader, method.paramStructType),
            results=_struct_fields(loader, method.resultStructType))
    return shape


def _struct_fields(loader: Any, struct_id: int) -> list[tuple[str, str]]:
    node = loader.get(struct_id).node
    return [(str(field.name), _type_name(loader, field.slot.type))
            for field in sorted(node.struct.fields, key=lambda f: f.codeOrder)]


def _type_name(loader: Any, type_: Any) -> str:
    """The type as a schema spells it: ``Text``, ``Int32``, ``List(Text)``, ``Block``."""
    kind = str(type_.which())
    if kind == "list":
        return f"List({_type_name(loader, type_.list.elementType)})"
    if kind in ("struct", "interface", "enum"):
        type_id = getattr(type_, kind).typeId
        return str(loader.get(type_id).node.displayName).rsplit(":", 1)[-1].rsplit(".")[-1]
    if kind.startswith("uint"):  # capnp spells them UInt8 ... UInt64
        return "UInt" + kind[4:]
    return kind[:1].upper() + kind[1:]


def disagreements(interfaces: tuple[Interface, ...], shapes: Shapes) -> list[str]:
    """Return one line per mismatch between ``interfaces`` (the table), ``shapes`` (the
    schemas, from ``describe``) and each row's ABC; empty when everything agrees."""
    problems: list[str] = []
    table = {interface.name: interface for interface in interfaces}
    for name in sorted(set(shapes) - set(table)):
        problems.append(f"{name}: interface in the schemas but not in the table")
    for interface in interfaces:
        if interface.name not in shapes:
            problems.append(f"{interface.name}: interface in the table but not in the schemas")
            continue
        problems += _schema_problems(interface, shapes[interface.name])
        if interface.abc is not None:
            problems += _abc_problems(interface, interface.abc)
    return problems


def _schema_problems(interface: Interface, shape: dict[str, MethodShape]) -> list[str]:
    problems: list[str] = []
    rows = {method.capnp: method for method in interface.methods}
    for name in sorted(set(shape) - set(rows)):
        problems.append(f"{interface.name}.{name}: method in the schema but not in the table")
    for method in interface.methods:
        where = f"{interface.name}.{method.capnp}"
        if method.capnp not in shape:
            problems.append(f"{where}: method in the table but not in the schema")
            continue
        schema = shape[method.capnp]
        if schema["ordinal"] != method.ordinal:
            problems.append(f"{where}: ordinal @{method.ordinal} in the table, "
                            f"@{schema['ordinal']} in the schema")
        problems += [f"{where}: {p}" for p in _field_problems(method, schema)]
    return problems


def _field_problems(method: Method, schema: MethodShape) -> list[str]:
    params = [tuple(pair) for pair in schema["params"]]
    has_context = bool(params) and params[0][1] == CONTEXT_TYPE
    if has_context != method.context:
        return [f"context parameter {'expected' if method.context else 'unexpected'}"]
    if has_context:
        params = params[1:]
    declared = [(param.capnp, param.conv.wire) for param in method.params]
    problems = []
    if [name for name, _ in params] != [name for name, _ in declared]:
        problems.append(f"parameters {[n for n, _ in declared]} in the table, "
                        f"{[n for n, _ in params]} in the schema")
    elif params != declared:
        problems.append(f"parameter types {declared} in the table, {params} in the schema")
    results: list[tuple[str, ...]] = [tuple(pair) for pair in schema["results"]]
    expected: list[tuple[str, ...]] = []
    if method.result is not None:
        expected.append((method.result_field, method.result.wire))
        if method.optional:
            expected.append(("hasResult", "Bool"))
    if sorted(results) != sorted(expected):
        problems.append(f"results {expected} in the table, {results} in the schema")
    return problems


def _abc_problems(interface: Interface, abc: type) -> list[str]:
    problems: list[str] = []
    methods = {name for name, member in inspect.getmembers(abc, inspect.iscoroutinefunction)
               if not name.startswith("_")}
    rows = {method.name: method for method in all_methods(interface)
            if method.name is not None}
    for name in sorted(methods - set(rows) if not interface.partial else ()):
        problems.append(f"{interface.name}: {abc.__name__}.{name} is not in the table")
    for name in sorted(set(rows) - methods):
        problems.append(f"{interface.name}.{rows[name].capnp}: {abc.__name__} has no "
                        f"coroutine method {name}")
    for name in sorted(methods & set(rows)):
        names = list(inspect.signature(getattr(abc, name)).parameters)[1:]
        declared = [param.name for param in rows[name].params]
        if names != declared:
            problems.append(f"{interface.name}.{rows[name].capnp}: parameters {declared} in "
                            f"the table, {names} in {abc.__name__}.{name}")
    return problems
