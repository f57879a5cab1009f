#!/usr/bin/env python3
"""Print pefile's view of PE files as JSON, for the differential test (tests/pefile_diff.rs).

Usage: pefile_facts.py FILE...  ->  a JSON list, one object per file:
  {"path", "error"} when pefile refuses the file, else
  {"path", "image_base", "entry_point", "number_of_sections", "format",
   "tls": null | {six fields, "callbacks": [VA...], "end": "null"|"unreadable"|"limit"}}

pefile does not read TLS callbacks itself; the array is read here with pefile's own
RVA-to-data mapping (pe.get_data), entry by entry, as tools built on pefile do.
"""
import json
import sys

import pefile

LIMIT = 4096


def callbacks(pe, tls, width):
    out = []
    va = tls.AddressOfCallBacks
    if va == 0:
        return out, "no_array"
    base = pe.OPTIONAL_HEADER.ImageBase
    rva = va - base
    if rva < 0:
        return out, "unreadable"
    for i in range(LIMIT):
        try:
            data = pe.get_data(rva + i * width, width)
        except pefile.PEFormatError:
            return out, "unreadable"
        if len(data) < width:
            return out, "unreadable"
        value = int.from_bytes(data, "little")
        if value == 0:
            return out, "null"
        out.append(value)
    return out, "limit"


def section_index(pe, va):
    """Index of the section pefile places the callback VA in (None outside any section)."""
    rva = va - pe.OPTIONAL_HEADER.ImageBase
    if rva < 0 or rva >= pe.OPTIONAL_HEADER.SizeOfImage:
        return None
    s = pe.get_section_by_rva(rva)
    if s is None:
        return None
    for i, t in enumerate(pe.sections):
        if t is s:
            return i
    return None


def facts(path):
    try:
        pe = pefile.PE(path, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_TLS"]]
        )
    except Exception as e:  # pefile raises PEFormatError and sometimes others
        return {"path": path, "error": f"{type(e).__name__}: {e}"}
    oh = pe.OPTIONAL_HEADER
    width = 8 if oh.Magic == 0x20B else 4
    out = {
        "path": path,
        "format": "pe32+" if width == 8 else "pe32",
        "image_base": oh.ImageBase,
        "entry_point": oh.AddressOfEntryPoint,
        "number_of_sections": pe.FILE_HEADER.NumberOfSections,
        "parsed_sections": len(pe.sections),
        "tls": None,
    }
    tls_entry = getattr(pe, "DIRECTORY_ENTRY_TLS", None)
    if tls_entry is not None:
        s = tls_entry.struct
        cbs, end = callbacks(pe, s, width)
        out["tls"] = {
            "start_address_of_raw_data": s.StartAddressOfRawData,
            "end_address_of_raw_data": s.EndAddressOfRawData,
            "address_of_index": s.AddressOfIndex,
            "address_of_callbacks": s.AddressOfCallBacks,
            "size_of_zero_fill": s.SizeOfZeroFill,
            "characteristics": s.Characteristics,
            "callbacks": cbs,
            "callback_sections": [section_index(pe, va) for va in cbs],
            "end": end,
        }
    return out


def main():
    print(json.dumps([facts(p) for p in sys.argv[1:]]))


if __name__ == "__main__":
    main()
