"""Read CMS's own quarterly NCCI files and pack them (``fhir-checker data import``).

Layouts read (as CMS publishes them on cms.gov):

- **PTP** edits, tab-delimited text (``ccipra-v304r0-f1.txt`` ...), Latin-1: a copyright
  notice line, a header wrapped over several lines (``Column 1``, ``Column 2``,
  ``*=in existence prior to 1996``, ``Effective Date``, ``Deletion Date`` (``*`` = none),
  ``Modifier Indicator``, ``PTP Edit Rationale``), then one edit per line. A setting comes
  in several files (f1..f4): pass them all.
- **MUE** CSV (``MCR_MUE_PractitionerServices_Eff_10-01-2024.csv``): a quoted multi-line
  notice as the first record, a header record, then ``code, MUE value, "3 Date of Service
  Edit: Clinical", rationale``.
- **Add-on code** edits, tab-delimited text or CSV (the ``.txt`` of the AOC zip, or the
  ``.xlsx`` saved as CSV): notice lines, then a header naming ``Add-on Code``,
  ``Primary Code``, ``AOC Edit Type`` and, where present, the edit's effective and deletion
  dates; columns are found by their names. Dates may be YYYYMMDD, YYYYDDD or MM/DD/YYYY;
  ``*`` or blank = none; primary ``CCCCC`` = no primary listed.

A malformed line stops the import with the file and line; nothing is written until every
input has been read, and each table is written to a temporary file and renamed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .ncci import (
    NO_PRIMARY,
    NO_START,
    OPEN_END,
    AddonRow,
    Mue,
    PtpColumns,
    is_packable_code,
    write_addons,
    write_mue,
    write_ptp,
)

SETTINGS = ("practitioner", "outpatient-hospital")
SETTING_TITLE = {"practitioner": "practitioner", "outpatient-hospital": "outpatient hospital"}


def table_name(kind: str, setting: str | None = None) -> str:
    """Manifest key of a table: ``ptp_practitioner``, ``mue_outpatient_hospital``, ``addon_codes``."""
    return "addon_codes" if kind == "addon" else f"{kind}_{(setting or '').replace('-', '_')}"


class CmsFileError(ValueError):
    """A source file that cannot be read: names the file and line."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


_ISO = re.compile(r"^\d{8}$")
_JULIAN = re.compile(r"^\d{7}$")
_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_FILE_DATE = re.compile(r"(\d{2})[-_](\d{2})[-_](\d{4})")
#: ``AOC_V2024Q4-MCR.txt``: the release's year and quarter.
_FILE_QUARTER = re.compile(r"(?i)(?<!\d)(20\d{2})[-_]?Q([1-4])(?!\d)")
#: ``ccipra-v303r0-f1.txt``: NCCI version 30.3; version N.Q is effective on the first day
#: of quarter Q (0 = January ... 3 = October) of 1994 + N (27.0 = 2021-01-01).
_FILE_NCCI_VERSION = re.compile(r"(?i)(?<![a-z0-9])v(\d{2})([0-3])r\d+")


def parse_cms_date(text: str, *, blank: int) -> int:
    """A CMS date cell -> YYYYMMDD int; ``blank`` for '*', empty or 99991231."""
    t = text.strip()
    if t in ("", "*") or t == str(OPEN_END):
        return blank
    if _ISO.match(t):
        date(int(t[:4]), int(t[4:6]), int(t[6:]))  # raises ValueError if not a real day
        return int(t)
    if _JULIAN.match(t):  # YYYYDDD
        d = date(int(t[:4]), 1, 1) + timedelta(days=int(t[4:]) - 1)
        if d.year != int(t[:4]) or int(t[4:]) < 1:
            raise ValueError(t)
        return d.year * 10000 + d.month * 100 + d.day
    m = _US.match(t)
    if m:
        d = date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
        return d.year * 10000 + d.month * 100 + d.day
    raise ValueError(t)


def _code(path: Path, line: int, text: str, what: str) -> str:
    code = text.strip().upper()
    if not is_packable_code(code):
        raise CmsFileError(path, line, f"{what} {text.strip()[:20]!r} is not a five-character CPT/HCPCS code")
    return code


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    try:
        return path.open("r", encoding=encoding, newline="")
    except OSError as exc:
        raise CmsFileError(path, None, f"cannot read: {exc.strerror}") from None


# --------------------------------------------------------------------------- PTP


@dataclass
class PtpRead:
    columns: PtpColumns = field(default_factory=PtpColumns)
    latest_effective: int = NO_START
    files: list[str] = field(default_factory=list)


def read_ptp(paths: Sequence[Path], into: PtpRead | None = None) -> PtpRead:
    """Read CMS PTP tab-delimited files (one setting, any number of parts)."""
    out = into or PtpRead()
    for path in paths:
        out.files.append(path.name)
        data_started = False
        saw_header = False
        with _open_text(path, "latin-1") as fh:
            for n, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                cells = line.split("\t")
                first = cells[0].strip().upper()
                if not data_started:
                    if "column 1" in line.lower():
                        saw_header = True
                    if not (saw_header and is_packable_code(first) and len(cells) >= 6):
                        continue  # notice and wrapped header lines
                    data_started = True
                if len(cells) < 6:
                    raise CmsFileError(path, n, f"expected 7 tab-separated columns, found {len(cells)}")
                c1 = _code(path, n, cells[0], "column 1 code")
                c2 = _code(path, n, cells[1], "column 2 code")
                try:
                    eff = parse_cms_date(cells[3], blank=NO_START)
                except ValueError:
                    raise CmsFileError(
                        path, n, f"effective date {cells[3].strip()[:20]!r} is not a date"
                    ) from None
                try:
                    dele = parse_cms_date(cells[4], blank=OPEN_END)
                except ValueError:
                    raise CmsFileError(
                        path, n, f"deletion date {cells[4].strip()[:20]!r} is not a date"
                    ) from None
                ind_text = cells[5].strip()
                if ind_text not in ("0", "1", "9"):
                    raise CmsFileError(path, n, f"modifier indicator {ind_text[:10]!r} is not 0, 1 or 9")
                rationale = cells[6].strip() if len(cells) > 6 else ""
                out.columns.add(c1, c2, eff, dele, int(ind_text), rationale or "Not stated")
                out.latest_effective = max(out.latest_effective, eff)
        if not data_started:
            raise CmsFileError(
                path, None, "no PTP edit rows found (expected a 'Column 1' header, then tab-separated rows)"
            )
    return out


# --------------------------------------------------------------------------- MUE


def _mai(path: Path, line: int, text: str) -> int:
    t = text.strip()
    if t[:1] in ("1", "2", "3") and (len(t) == 1 or not t[1].isdigit()):
        return int(t[0])
    raise CmsFileError(path, line, f"MUE adjudication indicator {t[:40]!r} does not start with 1, 2 or 3")


def read_mue(path: Path) -> list[Mue]:
    rows: dict[str, Mue] = {}
    header_seen = False
    with _open_text(path, "latin-1") as fh:
        reader = csv.reader(fh)
        try:
            for rec in reader:
                n = reader.line_num  # the record's last physical line
                if not rec or not any(c.strip() for c in rec):
                    continue
                if not header_seen:
                    # The header, not the notice (which also says "MUE" and "codes"): short
                    # cells, one naming the adjudication indicator or the MUE values.
                    cells = [c.strip().lower() for c in rec]
                    if (
                        len(rec) >= 3
                        and len(cells[0]) < 40
                        and any("adjudication" in c or "mue value" in c for c in cells)
                    ):
                        header_seen = True
                    continue  # the notice record(s) and the header
                if len(rec) < 3:
                    raise CmsFileError(
                        path, n, f"expected 4 columns (code, MUE value, MAI, rationale), found {len(rec)}"
                    )
                code = _code(path, n, rec[0], "HCPCS/CPT code")
                value_text = rec[1].strip()
                if not value_text.isdigit():
                    raise CmsFileError(path, n, f"MUE value {value_text[:20]!r} is not a whole number")
                rows[code] = Mue(
                    code, int(value_text), _mai(path, n, rec[2]), rec[3].strip() if len(rec) > 3 else ""
                )
        except csv.Error as exc:
            raise CmsFileError(path, reader.line_num, f"not valid CSV: {exc}") from None
    if not header_seen:
        raise CmsFileError(path, None, "no MUE header record found (HCPCS/CPT Code, ... MUE Values, ...)")
    if not rows:
        raise CmsFileError(path, None, "no MUE rows after the header")
    return list(rows.values())


# --------------------------------------------------------------------------- add-on


def _norm(h: str) -> str:
    return re.sub(r"[^a-z0-9]", "", h.lower())


def _addon_columns(header: list[str]) -> dict[str, int] | None:
    cols: dict[str, int] = {}
    for i, h in enumerate(header):
        k = _norm(h)
        if k in ("addoncode", "aoc", "aoccode"):
            cols.setdefault("addon", i)
        elif k == "primarycode":
            cols.setdefault("primary", i)
        elif "type" in k:
            cols.setdefault("type", i)
        elif "edit" in k and "effective" in k:
            cols.setdefault("effective", i)
        elif "edit" in k and "deletion" in k:
            cols.setdefault("deletion", i)
    return cols if {"addon", "primary", "type"} <= cols.keys() else None


def read_addons(path: Path) -> list[AddonRow]:
    with _open_text(path, "latin-1") as fh:
        text = fh.read()
    first = next((ln for ln in text.splitlines() if "\t" in ln or "," in ln), "")
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    cols: dict[str, int] | None = None
    rows: list[AddonRow] = []
    try:
        for rec in reader:
            n = reader.line_num
            if not rec or not any(c.strip() for c in rec):
                continue
            if cols is None:
                cols = _addon_columns(rec)
                continue
            need = max(cols.values())
            if len(rec) <= need:
                raise CmsFileError(path, n, f"expected at least {need + 1} columns, found {len(rec)}")
            addon = _code(path, n, rec[cols["addon"]], "add-on code")
            ptext = rec[cols["primary"]].strip().upper()
            primary = None if ptext in ("", NO_PRIMARY) else _code(path, n, ptext, "primary code")
            m = re.search(r"[123]", rec[cols["type"]])
            if not m:
                raise CmsFileError(
                    path, n, f"AOC edit type {rec[cols['type']].strip()[:20]!r} is not 1, 2 or 3"
                )
            dates = []
            for key, blank in (("effective", NO_START), ("deletion", OPEN_END)):
                if key not in cols:
                    dates.append(blank)
                    continue
                try:
                    dates.append(parse_cms_date(rec[cols[key]], blank=blank))
                except ValueError:
                    raise CmsFileError(
                        path, n, f"{key} date {rec[cols[key]].strip()[:20]!r} is not a date"
                    ) from None
            rows.append(AddonRow(addon, primary, int(m.group()), dates[0], dates[1]))
    except csv.Error as exc:
        raise CmsFileError(path, reader.line_num, f"not valid CSV: {exc}") from None
    if cols is None:
        raise CmsFileError(path, None, "no header naming 'Add-on Code', 'Primary Code' and 'AOC Edit Type'")
    if not rows:
        raise CmsFileError(path, None, "no add-on rows after the header")
    return rows


# --------------------------------------------------------------------------- import


def iso(v: int) -> str:
    s = f"{v:08d}"
    return f"{s[:4]}-{s[4:6]}-{s[6:]}"


def _file_date(paths: Sequence[Path]) -> str | None:
    """The release date CMS puts in its file names: ``_Eff_10-01-2024``, ``V2024Q4`` or
    the NCCI version ``v303r0`` (30.3 = 2024-10-01)."""
    for p in paths:
        m = _FILE_DATE.search(p.name)
        if m:
            try:
                return date(int(m.group(3)), int(m.group(1)), int(m.group(2))).isoformat()
            except ValueError:
                pass
        q = _FILE_QUARTER.search(p.name)
        if q:
            return date(int(q.group(1)), 3 * (int(q.group(2)) - 1) + 1, 1).isoformat()
        v = _FILE_NCCI_VERSION.search(p.name)
        if v:
            return date(1994 + int(v.group(1)), 3 * int(v.group(2)) + 1, 1).isoformat()
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    p = directory / "manifest.json"
    if not p.exists():
        return {"tables": {}}
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    data.setdefault("tables", {})
    return data


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(directory / "manifest.json", lambda fh: fh.write(body))


@dataclass
class Planned:
    """A table read and ready to be written."""

    name: str
    file: str
    title: str
    source: str
    effective: str
    write: Any  # Callable[[Path], int]
    extra: dict[str, Any] = field(default_factory=dict)


def _effective(explicit: str | None, paths: Sequence[Path], latest: int, what: str) -> str:
    if explicit:
        return explicit
    guess = _file_date(paths) or (iso(latest) if latest else None)
    if guess is None:
        raise CmsFileError(
            paths[0], None, f"cannot tell the {what} table's effective date: pass --effective DATE"
        )
    return guess


def plan_imports(
    *,
    ptp: dict[str, Sequence[Path]] | None = None,
    mue: dict[str, Path] | None = None,
    addon: Path | None = None,
    effective: str | None = None,
) -> list[Planned]:
    """Read every input (raising :class:`CmsFileError` on the first bad line)."""
    if effective is not None:
        try:
            effective = datetime.strptime(effective, "%Y-%m-%d").date().isoformat()
        except ValueError:
            raise ValueError(f"--effective {effective!r}: expected YYYY-MM-DD") from None
    planned: list[Planned] = []
    for setting, paths in (ptp or {}).items():
        read = read_ptp(paths)
        eff = _effective(effective, paths, read.latest_effective, f"PTP {setting}")
        name = table_name("ptp", setting)
        cols = read.columns
        planned.append(
            Planned(
                name,
                f"{name}.ptp",
                f"NCCI PTP edits, {SETTING_TITLE[setting]} services",
                f"CMS Medicare NCCI PTP edits, {SETTING_TITLE[setting]} ({', '.join(read.files)})",
                eff,
                lambda p, c=cols, m={"effective": eff, "setting": setting}: write_ptp(c, p, m),
            )
        )
    for setting, path in (mue or {}).items():
        mues = read_mue(path)
        eff = _effective(effective, [path], 0, f"MUE {setting}")
        name = table_name("mue", setting)
        planned.append(
            Planned(
                name,
                f"{name}.tsv.gz",
                f"NCCI MUEs, {SETTING_TITLE[setting]} services",
                f"CMS Medicare NCCI MUE table, {SETTING_TITLE[setting]} ({path.name})",
                eff,
                lambda p, r=mues: write_mue(r, p),
            )
        )
    if addon is not None:
        rows = read_addons(addon)
        latest = max((r.effective for r in rows), default=0)
        eff = _effective(effective, [addon], latest, "add-on")
        planned.append(
            Planned(
                "addon_codes",
                "addon_codes.tsv.gz",
                "NCCI add-on code edits",
                f"CMS Medicare NCCI add-on code edits ({addon.name})",
                eff,
                lambda p, r=rows: write_addons(r, p),
            )
        )
    return planned


def install(planned: Sequence[Planned], out: Path, *, base: Path | None = None) -> list[dict[str, Any]]:
    """Write the planned tables into ``out`` and update its manifest (only their keys).

    When ``out`` has no manifest yet and ``base`` (the shipped data) is given, the other
    tables of ``base`` are copied first so that ``out`` is a complete data directory.
    """
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    if base is not None and not (out / "manifest.json").exists() and base.resolve() != out.resolve():
        base_manifest = read_manifest(base)
        for name, entry in base_manifest["tables"].items():
            src = base / str(entry["file"])
            if src.exists():
                shutil.copyfile(src, out / src.name)
                manifest["tables"][name] = entry
    done: list[dict[str, Any]] = []
    staged: list[tuple[Path, Path]] = []
    try:
        # Every table is written to a staging name first; only when all are written are
        # they renamed into place, then the manifest: a failure leaves the old set intact.
        for p in planned:
            stage = out / f".{p.file}.new"
            rows = p.write(stage)
            staged.append((stage, out / p.file))
            entry = {
                "title": p.title,
                "source": p.source,
                "effective": p.effective,
                "file": p.file,
                "rows": rows,
                "sha256": sha256(stage),
                **p.extra,
            }
            manifest["tables"][p.name] = entry
            done.append({"name": p.name, **entry})
    except BaseException:
        for stage, _ in staged:
            stage.unlink(missing_ok=True)
        raise
    for stage, target in staged:
        os.replace(stage, target)
    write_manifest(out, manifest)
    return done
