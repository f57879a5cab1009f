//! Loaded-layout tests: real corpus images mapped as a loader maps them (sections at their RVAs,
//! relocated to another base by applying their base relocations) give the same facts as the
//! file, relocated; tampering with one field makes the diff report exactly that field.

mod common;

use common::{corkami, corpus_file};
use preentry_pe::synth::{LoadedImage, MapOptions, Regions, TlsField};
use preentry_pe::{
    DiffOptions, FieldDiff, FieldValue, Format, ImageFacts, LOADER_WRITTEN_FIELDS, Layout,
    NoOutside, PeImage, diff, diff_with,
};

/// Another base when the image has base relocations (the loader can move it), else its preferred
/// base (a loader cannot move an image without relocations).
fn other_base(img: &PeImage<'_>) -> u64 {
    let relocatable = img
        .data_directory(5)
        .is_some_and(|d| d.virtual_address != 0 && d.size != 0);
    if !relocatable {
        return img.image_base();
    }
    any_other_base(img)
}

fn any_other_base(img: &PeImage<'_>) -> u64 {
    match img.format() {
        Format::Pe32 if img.image_base() == 0x0050_0000 => 0x0060_0000,
        Format::Pe32 => 0x0050_0000,
        Format::Pe32Plus => 0x7ff6_1234_0000,
    }
}

fn fields(d: &[FieldDiff]) -> Vec<&str> {
    d.iter().map(|f| f.field.as_str()).collect()
}

/// corkami files whose NT headers run past the mapped header region into section space
/// ("folded" headers): the file reads its data directories and section table at file offsets
/// (as the kernel's image mapper and pefile do), memory has section bytes there. The diff
/// reports exactly that; it is the file's point, not a reader error.
const HEADER_DIFFERS_IN_MEMORY: &[(&str, &str)] = &[
    (
        "foldedhdr.exe",
        "NT headers at 0xF80 continue into the section mapped at 0x1000",
    ),
    ("foldedhdrW7.exe", "same, Windows 7 variant"),
];

/// Every corpus image that maps (SizeOfImage within the synth bound): loaded facts at another
/// base equal the file facts relocated to that base, field by field and for the whole TLS
/// record (callback RVAs, sections, relocation flags).
#[test]
fn every_corpus_image_relocated_matches_file_facts() {
    common::require_corpus();
    let mut mapped = 0;
    let mut with_tls = 0;
    let mut moved_tls_fields = 0;
    let mut unparsable_in_memory = Vec::new();
    let mut header_differs = Vec::new();
    for path in common::corpus_and_extra_pe_files() {
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(img) = PeImage::parse(&bytes, Layout::File) else {
            continue;
        };
        let base = other_base(&img);
        let Ok(mem) = LoadedImage::map(&bytes, base) else {
            eprintln!("not mapped (SizeOfImage too large): {name}");
            continue;
        };
        mapped += 1;
        let file = ImageFacts::from_image(&img, &NoOutside);
        let expected = file.relocated_to(base);
        let loaded = match mem.image() {
            Ok(l) => l,
            Err(e) => {
                unparsable_in_memory.push(path.file_name().unwrap().to_string_lossy().into_owned());
                eprintln!("{name}: mapped header unparsable: {e}");
                continue;
            }
        };
        assert_eq!(loaded.actual_base(), base);
        let observed = ImageFacts::from_image(&loaded, &NoOutside);
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((_, why)) = HEADER_DIFFERS_IN_MEMORY
            .iter()
            .find(|(f, _)| *f == file_name)
        {
            assert!(
                !diff(&expected, &observed).is_empty(),
                "{name}: expected a difference: {why}"
            );
            header_differs.push(file_name);
            continue;
        }
        assert_eq!(diff(&expected, &observed), vec![], "{name}");
        assert_eq!(expected.tls, observed.tls, "{name}");
        if let Some(t) = &observed.tls {
            with_tls += 1;
            let ft = file.tls.as_ref().unwrap();
            if t.address_of_callbacks != ft.address_of_callbacks {
                moved_tls_fields += 1;
            }
            for cb in &t.callbacks {
                if cb.in_image {
                    assert_eq!(cb.rva, Some(cb.va - base), "{name}");
                }
            }
        }
        // Without the loader's ImageBase write (e.g. a manual mapper), exactly that field
        // differs, and the documented exclusion removes it.
        let mem2 = LoadedImage::map_with(
            &bytes,
            base,
            MapOptions {
                write_image_base: false,
            },
        )
        .unwrap();
        let observed2 = ImageFacts::from_image(&mem2.image().unwrap(), &NoOutside);
        if base != img.image_base() {
            assert_eq!(
                fields(&diff(&expected, &observed2)),
                LOADER_WRITTEN_FIELDS,
                "{name}"
            );
        }
        let opts = DiffOptions {
            ignore: LOADER_WRITTEN_FIELDS,
        };
        assert_eq!(diff_with(&expected, &observed2, &opts), vec![], "{name}");
    }
    // corkami lfanew_relocW7.exe carries a base relocation on e_lfanew itself: once relocated,
    // the header moves (to offset 0 for our base), which is the file's point.
    assert_eq!(unparsable_in_memory, ["lfanew_relocW7.exe"]);
    assert_eq!(
        header_differs.len(),
        HEADER_DIFFERS_IN_MEMORY.len(),
        "{header_differs:?}"
    );
    eprintln!(
        "mapped {mapped}, with TLS {with_tls}, relocated AddressOfCallBacks {moved_tls_fields}"
    );
    assert!(mapped >= 30, "mapped only {mapped}");
    assert!(with_tls >= 20, "only {with_tls} with TLS");
    // tls_reloc and two goblin MSVC images carry relocations for their TLS fields.
    assert!(
        moved_tls_fields >= 3,
        "only {moved_tls_fields} images moved their TLS array"
    );
}

/// An image without relocations forced to another base (what a manual mapper that ignores
/// relocations produces): nothing is relocated, the array pointer is stale and the array is
/// unreadable, in the expected facts and in the mapped image alike.
#[test]
fn image_without_relocations_moved_keeps_stale_tls_pointers() {
    for bytes in [
        corkami("tls.exe"),
        corpus_file("goblin/tests/bins/pe/lld_with_tls_64.exe.bin"),
    ] {
        let img = PeImage::parse(&bytes, Layout::File).unwrap();
        let base = any_other_base(&img);
        let file = ImageFacts::from_image(&img, &NoOutside);
        let expected = file.relocated_to(base);
        let et = expected.tls.as_ref().unwrap();
        let ft = file.tls.as_ref().unwrap();
        assert_eq!(et.address_of_callbacks, ft.address_of_callbacks);
        assert!(et.callbacks.is_empty() && !et.terminated);
        let mem = LoadedImage::map(&bytes, base).unwrap();
        let observed = ImageFacts::from_image(&mem.image().unwrap(), &NoOutside);
        assert_eq!(diff(&expected, &observed), vec![]);
        assert_eq!(observed.tls, expected.tls);
    }
}

/// A mapping at the preferred base with no tampering yields no difference against the file.
#[test]
fn untouched_image_at_preferred_base_has_empty_diff() {
    let bytes = corpus_file("goblin/tests/bins/pe/lld_with_tls_64.exe.bin");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let mem = LoadedImage::map(&bytes, img.image_base()).unwrap();
    let file = ImageFacts::from_image(&img, &NoOutside);
    let observed = ImageFacts::from_image(&mem.image().unwrap(), &NoOutside);
    assert_eq!(diff(&file, &observed), vec![]);
    assert_eq!(
        diff(&file.relocated_to(img.image_base()), &observed),
        vec![]
    );
}

struct Case {
    file: Vec<u8>,
    base: u64,
    expected: ImageFacts,
    mem: LoadedImage,
}

fn case(bytes: Vec<u8>) -> Case {
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let base = other_base(&img);
    let expected = ImageFacts::from_image(&img, &NoOutside).relocated_to(base);
    let mem = LoadedImage::map(&bytes, base).unwrap();
    Case {
        file: bytes.clone(),
        base,
        expected,
        mem,
    }
}

impl Case {
    fn observe(&self, outside: &Regions) -> ImageFacts {
        ImageFacts::from_image(&self.mem.image().unwrap(), outside)
    }
    fn diff(&self) -> Vec<FieldDiff> {
        diff(&self.expected, &self.observe(&Regions::default()))
    }
}

/// PE32+ with TLS callbacks and base relocations covering the TLS fields.
fn tls64() -> Vec<u8> {
    corpus_file("goblin/tests/bins/pe/well_formed_import.exe.bin")
}

#[test]
fn changed_entry_point_is_the_only_difference() {
    for bytes in [tls64(), corkami("tls.exe")] {
        let mut c = case(bytes);
        let old = c.expected.entry_point_rva;
        c.mem.set_entry_point(old + 0x10).unwrap();
        let d = c.diff();
        assert_eq!(
            d,
            vec![FieldDiff {
                field: "optional_header.address_of_entry_point".into(),
                expected: FieldValue::Int(old.into()),
                observed: FieldValue::Int((old + 0x10).into()),
            }]
        );
    }
}

#[test]
fn changed_section_characteristics_is_the_only_difference() {
    let mut c = case(tls64());
    let old = c.expected.sections[0].characteristics;
    c.mem
        .set_section_characteristics(0, old | 0x8000_0000)
        .unwrap();
    let d = c.diff();
    assert_eq!(fields(&d), ["section[0].characteristics"]);
    assert_eq!(d[0].observed, FieldValue::Int((old | 0x8000_0000).into()));
}

#[test]
fn non_utf8_section_name_is_reported_in_hex() {
    let mut c = case(tls64());
    let off = c.mem.image().unwrap().section_table_offset();
    c.mem
        .write_width(off, 4, u64::from(u32::from_le_bytes(*b".t\xffx")));
    let d = c.diff();
    assert_eq!(fields(&d), ["section[0].name"]);
    assert_eq!(d[0].expected, FieldValue::Text(".text".into()));
    match &d[0].observed {
        FieldValue::Text(t) => assert!(t.starts_with("hex:2e74ff78"), "{t}"),
        other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(c.observe(&Regions::default())).unwrap();
    assert_eq!(json["sections"][0]["name"], ".t\u{fffd}xt");
    assert_eq!(json["sections"][0]["name_hex"], "2e74ff7874");
}

/// Hollowing-style: a new callback written into slot 0 of the existing array.
#[test]
fn overwritten_callback_slot_is_the_only_difference() {
    for bytes in [tls64(), corkami("tls.exe")] {
        let mut c = case(bytes);
        let old = c.expected.tls.as_ref().unwrap().callbacks[0].va;
        let evil = c.base + 0x1004;
        c.mem.set_callback(0, evil).unwrap();
        let d = c.diff();
        assert_eq!(
            d,
            vec![FieldDiff {
                field: "tls.callbacks[0]".into(),
                expected: FieldValue::Int(old),
                observed: FieldValue::Int(evil),
            }]
        );
    }
}

/// tls-array-swap: AddressOfCallBacks pointed at a new array in private memory outside the
/// image; the array's entries come from the memory scanner's VaReader.
#[test]
fn callback_array_swapped_outside_the_image() {
    let mut c = case(tls64());
    let old_cbs: Vec<u64> = c
        .expected
        .tls
        .as_ref()
        .unwrap()
        .callbacks
        .iter()
        .map(|s| s.va)
        .collect();
    assert_eq!(old_cbs.len(), 1);
    let array_va = 0x0000_01a0_0000_0000u64;
    let payload = 0x0000_01a0_0000_0100u64;

    // Same entries as before in the new array: only AddressOfCallBacks differs.
    let mut same = Vec::new();
    same.extend_from_slice(&old_cbs[0].to_le_bytes());
    same.extend_from_slice(&0u64.to_le_bytes());
    c.mem
        .set_tls_field(TlsField::AddressOfCallbacks, array_va)
        .unwrap();
    let observed = c.observe(&Regions(vec![(array_va, same)]));
    let d = diff(&c.expected, &observed);
    assert_eq!(fields(&d), ["tls.address_of_callbacks"]);
    let t = observed.tls.as_ref().unwrap();
    let array = t.array.as_ref().unwrap();
    assert!(!array.in_image && array.rva.is_none());

    // A payload entry first: slot 0 changes and slot 1 appears.
    let mut evil = Vec::new();
    for v in [payload, old_cbs[0], 0] {
        evil.extend_from_slice(&v.to_le_bytes());
    }
    let observed = c.observe(&Regions(vec![(array_va, evil)]));
    let d = diff(&c.expected, &observed);
    assert_eq!(
        fields(&d),
        [
            "tls.address_of_callbacks",
            "tls.callbacks[0]",
            "tls.callbacks[1]"
        ]
    );
    let t = observed.tls.unwrap();
    assert_eq!(t.callbacks[0].va, payload);
    assert!(!t.callbacks[0].in_image && t.callbacks[0].executable.is_none());
    assert!(t.callbacks[1].in_image);

    // Without the outside reader the array is unreadable and reported as such.
    let observed = c.observe(&Regions::default());
    let t = observed.tls.as_ref().unwrap();
    assert!(t.callbacks.is_empty() && !t.terminated);
    assert_eq!(
        t.end,
        preentry_pe::ArrayEnd::Unreadable {
            va: array_va,
            index: 0
        }
    );
    let d = diff(&c.expected, &observed);
    assert_eq!(
        fields(&d),
        [
            "tls.address_of_callbacks",
            "tls.callbacks[0]",
            "tls.callbacks_terminated"
        ]
    );
}

/// A TLS directory added to an image that had none (payload with TLS written over a victim).
#[test]
fn tls_directory_added_where_the_file_has_none() {
    let bytes = corpus_file("goblin/tests/bins/pe/lld_no_tls_64.exe.bin");
    let mut c = case(bytes);
    assert!(c.expected.tls.is_none());
    // Build a directory + array in the image's last 0x40 bytes of .text-adjacent space:
    // use the headers page tail, which a hollowing payload may reuse.
    let dir_rva = 0xe00u64;
    let arr_rva = 0xe40u64;
    let cb = c.base + 0x1000;
    c.mem.write_width(dir_rva + 24, 8, c.base + arr_rva);
    c.mem.write_width(arr_rva, 8, cb);
    c.mem.set_data_directory(9, dir_rva as u32, 40).unwrap();
    let d = c.diff();
    assert_eq!(
        fields(&d),
        [
            "data_directory.tls.virtual_address",
            "data_directory.tls.size",
            "tls"
        ]
    );
    assert_eq!(d[2].expected, FieldValue::Absent);
    assert_eq!(d[2].observed, FieldValue::Bool(true));
    let t = c.observe(&Regions::default()).tls.unwrap();
    assert_eq!(t.callbacks.len(), 1);
    assert_eq!(t.callbacks[0].rva, Some(0x1000));
    assert_eq!(t.callbacks[0].executable, Some(true));
    assert!(
        t.directory.in_image && t.directory.section.is_none(),
        "in the headers"
    );
}

/// Each TLS directory field, changed alone, is reported alone under its name.
#[test]
fn each_tls_field_is_named() {
    let names = [
        (
            TlsField::StartAddressOfRawData,
            "tls.start_address_of_raw_data",
        ),
        (TlsField::EndAddressOfRawData, "tls.end_address_of_raw_data"),
        (TlsField::AddressOfIndex, "tls.address_of_index"),
        (TlsField::SizeOfZeroFill, "tls.size_of_zero_fill"),
        (TlsField::Characteristics, "tls.characteristics"),
    ];
    for bytes in [tls64(), corkami("tls_reloc.exe")] {
        for (field, name) in names {
            let mut c = case(bytes.clone());
            c.mem.set_tls_field(field, 0x1234).unwrap();
            assert_eq!(fields(&c.diff()), [name], "{field:?}");
        }
    }
    // The data directory size alone: the loader ignores it, we still report it.
    let mut c = case(tls64());
    let dir = c.expected.data_directories[9];
    c.mem
        .set_data_directory(9, dir.virtual_address, dir.size + 8)
        .unwrap();
    assert_eq!(fields(&c.diff()), ["data_directory.tls.size"]);
    let _ = &c.file;
}

/// The loaded reader takes the base from the caller, never from the header.
#[test]
fn loaded_layout_ignores_header_image_base() {
    let bytes = tls64();
    let c = case(bytes);
    let mut mem = c.mem.clone();
    mem.write_width(
        mem.image().unwrap().optional_header_offset() + 24,
        8,
        0x1_4000_0000,
    );
    let img = mem.image().unwrap();
    assert_eq!(img.image_base(), 0x1_4000_0000);
    assert_eq!(img.actual_base(), c.base);
    let t = img.tls(&NoOutside).unwrap().unwrap();
    assert_eq!(t.callbacks[0].rva, Some(t.callbacks[0].va - c.base));
}

/// An array without NULL in outside memory: reading stops at CALLBACK_LIMIT and says so.
#[test]
fn callback_limit_is_reported() {
    let mut c = case(corkami("tls_reloc.exe"));
    let array_va = 0x0100_0000u64;
    let n = preentry_pe::CALLBACK_LIMIT + 10;
    let entries: Vec<u8> = (0..n as u32)
        .flat_map(|i| (0x0200_0000 + i).to_le_bytes())
        .collect();
    c.mem
        .set_tls_field(TlsField::AddressOfCallbacks, array_va)
        .unwrap();
    let observed = c.observe(&Regions(vec![(array_va, entries)]));
    let t = observed.tls.as_ref().unwrap();
    assert_eq!(t.callbacks.len(), preentry_pe::CALLBACK_LIMIT);
    assert!(t.hit_limit && !t.terminated);
    assert_eq!(
        t.end,
        preentry_pe::ArrayEnd::Limit {
            entries: preentry_pe::CALLBACK_LIMIT
        }
    );
    assert_eq!(t.callbacks[4095].va, 0x0200_0000 + 4095);
    let d = diff(&c.expected, &observed);
    assert!(fields(&d).contains(&"tls.callbacks_hit_limit"));
    assert!(fields(&d).contains(&"tls.callbacks[4095]"));
    assert_eq!(
        d.len(),
        1 + preentry_pe::CALLBACK_LIMIT + 2,
        "address, 4096 slots, terminated, limit"
    );
}

/// A memory scanner may hold only the header page: the TLS directory and array are then read
/// through its VaReader, with the same result as from the full view.
#[test]
fn partial_view_is_completed_by_the_outside_reader() {
    let c = case(tls64());
    let full = c.observe(&Regions::default()).tls.unwrap();
    let head = &c.mem.bytes[..0x1000];
    let rest = Regions(vec![(c.base + 0x1000, c.mem.bytes[0x1000..].to_vec())]);
    let img = PeImage::parse(head, Layout::Loaded { base: c.base }).unwrap();
    let partial = img.tls(&rest).unwrap().unwrap();
    assert_eq!(partial.address_of_callbacks, full.address_of_callbacks);
    let vas = |t: &preentry_pe::TlsInfo| {
        t.callbacks
            .iter()
            .map(|c| (c.va, c.rva, c.section.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(vas(&partial), vas(&full));
    assert!(partial.terminated);
    // Relocation coverage comes from the view only: the .reloc bytes are not in it.
    assert!(matches!(
        partial.relocations.table,
        preentry_pe::RelocTable::Unreadable { .. }
    ));
    assert!(full.callbacks[0].relocated && !partial.callbacks[0].relocated);
    // Without the reader the directory is unreadable and the error names its RVA.
    let err = img.tls(&NoOutside).unwrap_err();
    assert!(err.to_string().contains("TLS directory at RVA"), "{err}");
}
