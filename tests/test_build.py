"""The mypyc build (setup.py): what it leaves for a developer in a source checkout."""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import pytest

import fhir_checker
from fhir_checker import _warn_if_stale
from fhir_checker.registry import _source_docstrings, get_rule

PACKAGE = Path(fhir_checker.__file__).resolve().parent


def test_a_source_newer_than_its_compiled_module_warns() -> None:
    source = PACKAGE / "values.py"
    before = source.stat()
    built = [p.stat().st_mtime for p in PACKAGE.glob("values.*.so")]
    try:
        # an hour after the later of the source and its compiled module (a rebuild is newer than the checkout)
        os.utime(source, (before.st_atime, max([before.st_mtime, *built]) + 3600))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _warn_if_stale()
        stale = [
            w for w in caught if "fhir_checker/values.py changed after it was compiled" in str(w.message)
        ]
        # Only a compiled build has something to be stale against.
        assert len(stale) == (1 if fhir_checker.compiled() else 0)
    finally:
        os.utime(source, (before.st_atime, before.st_mtime))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_if_stale()
    assert not [w for w in caught if "changed after it was compiled" in str(w.message)]


def test_rule_docs_come_from_the_source_when_compiled_functions_have_none() -> None:
    docs = _source_docstrings("fhir_checker.rules.ptp")
    rule = get_rule("PTP001")
    assert rule.check.__name__ in docs
    assert rule.doc.startswith(docs[rule.check.__name__].strip().splitlines()[0].strip())
    assert "How to fix" in rule.doc or "Fix" in rule.doc
    assert _source_docstrings("fhir_checker.no_such_module") == {}


def _written_out_inits() -> list[tuple[str, ast.ClassDef, ast.FunctionDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            if not any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                continue
            init = next(
                (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
            )
            if init is not None:
                found.append((f"{path.relative_to(PACKAGE)}:{node.name}", node, init))
    return found


def test_written_out_dataclass_inits_match_their_fields() -> None:
    """Hot dataclasses carry a hand-written ``__init__`` (mypyc compiles it; the generated one
    is interpreted): it must take every field, in field order, with the field's default, and
    set each field once, or ``replace()`` and the pure-Python build would drift from it."""
    inits = _written_out_inits()
    assert len(inits) >= 10, [name for name, _, _ in inits]
    for name, cls, init in inits:
        fields = [s for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        field_names = [f.target.id for f in fields if isinstance(f.target, ast.Name)]
        params = [a.arg for a in init.args.args[1:]]
        assert params == field_names, name
        defaults = [None] * (len(params) - len(init.args.defaults)) + list(init.args.defaults)
        for f, default in zip(fields, defaults, strict=True):
            declared = ast.unparse(f.value) if f.value is not None else None
            given = ast.unparse(default) if default is not None else None
            if declared is not None and declared.startswith("field(default_factory="):
                assert given == "None", f"{name}.{ast.unparse(f.target)}: a factory field defaults to None"
            else:
                assert given == declared, f"{name}.{ast.unparse(f.target)}: default {given} != {declared}"
        set_fields = []
        for st in init.body:
            assert isinstance(st, ast.Assign | ast.Expr), f"{name}: only field assignments in __init__"
            if isinstance(st, ast.Assign):
                target = st.targets[0]
                assert isinstance(target, ast.Attribute), name
                set_fields.append(target.attr)
            else:  # object.__setattr__(self, "field", value) in a frozen class
                call = st.value
                assert isinstance(call, ast.Call) and ast.unparse(call.func) == "object.__setattr__", name
                first = call.args[1]
                assert isinstance(first, ast.Constant), name
                set_fields.append(first.value)
        assert set_fields == field_names, name


def test_written_out_inits_build_what_the_dataclass_would() -> None:
    """Behaviour, in whichever build runs: defaults, factories, frozenness, replace()."""
    import dataclasses

    from fhir_checker.context import Coding
    from fhir_checker.findings import Finding, Severity

    a = Finding("PTP001", "ptp-pair", "ptp", Severity.ERROR, "business-rule", "m.", "Claim.item[1]")
    b = Finding("PTP001", "ptp-pair", "ptp", Severity.ERROR, "business-rule", "m.", "Claim.item[1]")
    assert a == b and a.extra == {} and a.extra is not b.extra
    assert a.evidence == "" and a.line is None and a.fix is None
    c = dataclasses.replace(a, severity=Severity.WARNING)
    assert c.severity is Severity.WARNING and c.rule_id == "PTP001"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.rule_id = "X"  # type: ignore[misc]
    coding = Coding(None, "99213", "Claim.item[0].productOrService.coding[0]")
    assert hash(coding) == hash(Coding(None, "99213", "Claim.item[0].productOrService.coding[0]"))


#: Runtime dependencies that are not build requirements (pyproject.toml [build-system]), so
#: pip's isolated build environment lacks them: mypyc type-checks every module a compiled
#: module imports (and its packages' ``__init__``) and fails the install on one it cannot find.
_NOT_IN_THE_BUILD_ENVIRONMENT = ("fastapi", "starlette", "httpx", "uvicorn", "respx", "rich")


def _compiled_sources() -> list[str]:
    tree = ast.parse((PACKAGE.parent / "setup.py").read_text(encoding="utf-8"))
    listed = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets)
    )
    assert isinstance(listed, ast.List)
    sources = [e.value for e in listed.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    sources += [
        str(p.relative_to(PACKAGE.parent))
        for p in (PACKAGE / "rules").glob("*.py")
        if p.name != "__init__.py"
    ]
    return sources


def _module_file(name: str) -> Path | None:
    base = PACKAGE.parent / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # ``from . import x``
    return found


def test_compiled_modules_import_nothing_the_build_environment_lacks() -> None:
    """A compiled module must not reach FastAPI, httpx ... through its imports (transitively,
    parent packages included): ``pip install`` in a clean checkout would fail at the compile.
    (A warm ``.mypy_cache`` hides this locally, which is how it once reached CI.)"""
    todo = [s.removesuffix(".py").replace("/", ".") for s in _compiled_sources()]
    assert "fhir_checker.hook_cards" in todo and "fhir_checker.engine" in todo
    seen: dict[str, str] = {m: m for m in todo}  # module -> the compiled module that reaches it
    while todo:
        module = todo.pop()
        parts = module.split(".")
        parents = [".".join(parts[:n]) for n in range(1, len(parts))]
        for name in [module, *parents]:
            path = _module_file(name)
            if path is None:
                continue
            for imported in _imports(path, name):
                top = imported.split(".")[0]
                assert top not in _NOT_IN_THE_BUILD_ENVIRONMENT, (
                    f"{seen[module]} reaches {imported} (through {name})"
                )
                if top == "fhir_checker" and imported not in seen and _module_file(imported):
                    seen[imported] = seen[module]
                    todo.append(imported)
