//! The corkami TLS edge cases and goblin's malformed-callback binary: facts checked against
//! what the `.asm` sources beside the binaries say (read in place from `../shared/corpus/pe`).

mod common;

use common::{corkami, corpus_file};
use object::read::pe::{ImageThunkData, ImportTable};
use preentry_pe::synth::LoadedImage;
use preentry_pe::{
    ArrayEnd, FieldValue, ImageFacts, Layout, NoOutside, PeImage, RelocTable, TlsInfo, diff,
};

fn tls_of(bytes: &[u8]) -> TlsInfo {
    let img = PeImage::parse(bytes, Layout::File).expect("parse");
    img.tls(&NoOutside).expect("tls readable").expect("has TLS")
}

/// tls_import.asm: `AddressOfCallBacks = __imp__WinExec`, the IAT slot of kernel32!WinExec.
/// On disk that slot holds the RVA of the `WinExec` hint/name entry (the loader later writes
/// the resolved address there, so WinExec is called with the image base as argument); the next
/// IAT slot is the kernel32 terminator 0.
#[test]
fn tls_import_array_is_the_winexec_iat_slot() {
    let bytes = corkami("tls_import.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let tls = img.tls(&NoOutside).unwrap().unwrap();

    // Independent cross-check with object's import table reader.
    let s = &img.sections()[0];
    let sec_data = &bytes[s.pointer_to_raw_data as usize..][..s.size_of_raw_data as usize];
    let import_rva = img.data_directory(1).unwrap().virtual_address;
    let table = ImportTable::new(sec_data, s.virtual_address, import_rva);
    let mut winexec_slot = None;
    let mut winexec_hint_rva = None;
    let mut descs = table.descriptors().unwrap();
    while let Some(d) = descs.next().unwrap() {
        if table.name(d.name.get(object::LittleEndian)).unwrap() != b"kernel32.dll" {
            continue;
        }
        let first = d.first_thunk.get(object::LittleEndian);
        let mut thunks = table.thunks(first).unwrap();
        let mut i = 0u32;
        while let Some(t) = thunks.next::<object::pe::ImageNtHeaders32>().unwrap() {
            let (_, name) = table.hint_name(t.address()).unwrap();
            if name == b"WinExec" {
                winexec_slot = Some(u64::from(first + 4 * i));
                winexec_hint_rva = Some(u64::from(t.address()));
            }
            i += 1;
        }
    }
    let slot_rva = winexec_slot.expect("kernel32!WinExec thunk");
    assert_eq!(tls.address_of_callbacks, img.image_base() + slot_rva);
    let array = tls.array.as_ref().unwrap();
    assert!(array.in_image);
    assert!(array.in_import_address_table, "array lies in the IAT");
    assert_eq!(tls.callbacks.len(), 1);
    let cb = &tls.callbacks[0];
    assert_eq!(
        cb.va,
        winexec_hint_rva.unwrap(),
        "on disk: the hint/name RVA"
    );
    assert!(
        !cb.in_image,
        "a small RVA taken as a VA is below the image base"
    );
    assert_eq!(cb.rva, None);
    assert!(tls.terminated);
    assert_eq!(tls.end, ArrayEnd::Null { index: 1 });

    // In memory the loader resolves the slot: simulate that, and the diff names the slot.
    let mut mem = LoadedImage::map(&bytes, img.image_base()).unwrap();
    mem.write_va(slot_rva, 0x7c86_250d); // a kernel32-style address
    let observed = ImageFacts::from_image(&mem.image().unwrap(), &NoOutside);
    let expected = ImageFacts::from_image(&img, &NoOutside);
    let d = diff(&expected, &observed);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].field, "tls.callbacks[0]");
    assert_eq!(d[0].observed, FieldValue::Int(0x7c86_250d));
    let tls_mem = observed.tls.unwrap();
    assert!(!tls_mem.callbacks[0].in_image);
    assert!(tls_mem.array.unwrap().in_import_address_table);
}

/// tls_obfuscation.asm: five callbacks (`tls`, `tls2+1` … `tls5+1`, all inside the code),
/// then no NULL: the string "Que j'aime … sages !" follows and is read as entries until the
/// `dd 0` after it.
#[test]
fn tls_obfuscation_reads_past_missing_null_into_the_string() {
    let bytes = corkami("tls_obfuscation.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let tls = tls_of(&bytes);
    let ep = img.image_base() + u64::from(img.entry_point_rva());
    // tls2 = EntryPoint; tls3 = after `push message` (5 bytes); tls6 = after `call [..]` (6).
    assert_eq!(tls.callbacks[1].va, ep + 1);
    assert_eq!(tls.callbacks[2].va, ep + 5 + 1);
    for cb in &tls.callbacks[..5] {
        assert!(cb.in_image && cb.executable == Some(true), "{cb:?}");
    }
    // Entries 5.. are the text of the string, 4 bytes at a time.
    let text: Vec<u8> = tls.callbacks[5..]
        .iter()
        .flat_map(|c| (c.va as u32).to_le_bytes())
        .collect();
    assert!(
        text.starts_with(b"Que j'aime "),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        text.ends_with(b"sages !"),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        tls.callbacks[5..]
            .iter()
            .all(|c| !c.in_image && c.section.is_none())
    );
    // 56-byte string -> 14 entries, then the dd 0.
    assert_eq!(tls.callbacks.len(), 5 + 14);
    assert!(tls.terminated);
    assert_eq!(tls.end, ArrayEnd::Null { index: 19 });
    // StartAddressOfRawData etc. point at `some_values`, SizeOfZeroFill is a VA too.
    assert_eq!(
        tls.end_address_of_raw_data,
        tls.start_address_of_raw_data + 4
    );
    assert_eq!(tls.address_of_index, tls.start_address_of_raw_data + 8);
    assert_eq!(
        u64::from(tls.size_of_zero_fill),
        tls.start_address_of_raw_data + 0xc
    );
    assert_eq!(
        tls.address_of_callbacks,
        tls.start_address_of_raw_data + 0x10
    );
}

/// tls_reloc.asm: ImageBase 0xFFFF0000 (cannot load there: always relocated). Relocations
/// cover AddressOfIndex, AddressOfCallBacks and callback 0 (`reloc40/50/60`), not the zero
/// raw-data fields. The relocation block is 22 bytes (not a multiple of 4).
#[test]
fn tls_reloc_relocations_cover_exactly_the_tls_va_fields() {
    let bytes = corkami("tls_reloc.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    assert_eq!(img.image_base(), 0xffff_0000);
    let tls = tls_of(&bytes);
    let r = tls.relocations;
    assert_eq!(r.table, RelocTable::Present);
    assert!(r.address_of_index && r.address_of_callbacks);
    assert!(!r.start_address_of_raw_data && !r.end_address_of_raw_data);
    assert_eq!(tls.callbacks.len(), 1);
    assert!(tls.callbacks[0].relocated);
    assert!(tls.callbacks[0].executable == Some(true));
    // `dd $ + 2 * 4`: AddressOfIndex points 8 bytes past itself (the AddressOfCallBacks field).
    let dir_va = img.image_base() + tls.directory.rva.unwrap();
    assert_eq!(tls.address_of_index, dir_va + 8 + 8);

    // Expected loaded values at 0x00400000, and a real mapping with relocations applied agrees.
    let base = 0x0040_0000;
    let file = ImageFacts::from_image(&img, &NoOutside);
    let expected = file.relocated_to(base);
    let et = expected.tls.as_ref().unwrap();
    assert_eq!(
        et.address_of_callbacks,
        tls.address_of_callbacks - 0xffff_0000 + base
    );
    assert_eq!(
        et.address_of_index,
        tls.address_of_index - 0xffff_0000 + base
    );
    assert_eq!(et.callbacks[0].va, tls.callbacks[0].va - 0xffff_0000 + base);
    assert_eq!(et.start_address_of_raw_data, 0);
    let mem = LoadedImage::map(&bytes, base).unwrap();
    let observed = ImageFacts::from_image(&mem.image().unwrap(), &NoOutside);
    assert_eq!(diff(&expected, &observed), vec![]);
    assert_eq!(observed.tls, expected.tls);
}

/// tls_onthefly.asm: on disk `CallBacks: dd tls, 0, 0`; the first callback writes `tls2` into
/// slot 1 (`mov dword [CallBacks + 4], tls2`) so the loader calls it next.
#[test]
fn tls_onthefly_one_callback_on_disk_second_added_in_memory() {
    let bytes = corkami("tls_onthefly.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let tls = tls_of(&bytes);
    assert_eq!(tls.callbacks.len(), 1);
    assert_eq!(tls.end, ArrayEnd::Null { index: 1 });
    assert!(tls.callbacks[0].executable == Some(true));

    // Find `C7 05 <CallBacks+4> <tls2>` in the code to learn tls2 from the binary itself.
    let slot1 = (tls.address_of_callbacks as u32 + 4).to_le_bytes();
    let pat = [0xc7, 0x05, slot1[0], slot1[1], slot1[2], slot1[3]];
    let at = bytes
        .windows(6)
        .position(|w| w == pat)
        .expect("mov [CallBacks+4], tls2");
    let tls2 = u32::from_le_bytes(bytes[at + 6..at + 10].try_into().unwrap());
    assert!(img.va_to_rva(tls2.into()).is_some());
    // The first callback's code is the one that contains that mov.
    assert!(u64::from(tls2) > tls.callbacks[0].va);

    let base = img.image_base();
    let mut mem = LoadedImage::map(&bytes, base).unwrap();
    let expected = ImageFacts::from_image(&img, &NoOutside).relocated_to(base);
    mem.set_callback(1, tls2.into()).unwrap();
    let observed = ImageFacts::from_image(&mem.image().unwrap(), &NoOutside);
    let d = diff(&expected, &observed);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].field, "tls.callbacks[1]");
    assert_eq!(d[0].expected, FieldValue::Absent);
    assert_eq!(d[0].observed, FieldValue::Int(tls2.into()));
}

/// tls_noEP.asm: `AddressOfEntryPoint = 0 - IMAGEBASE` (0xFFC00000, outside the image); the
/// only code is the TLS callback, which calls ExitProcess. AddressOfIndex points at
/// `dd 012345h`; the raw-data fields are 0.
#[test]
fn tls_no_entry_point() {
    let bytes = corkami("tls_noEP.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    assert_eq!(img.entry_point_rva(), 0u32.wrapping_sub(0x0040_0000));
    assert!(img.entry_point_rva() >= img.size_of_image());
    let tls = tls_of(&bytes);
    assert_eq!(tls.start_address_of_raw_data, 0);
    assert_eq!(tls.end_address_of_raw_data, 0);
    assert_eq!(tls.size_of_zero_fill, 0);
    assert_eq!(tls.characteristics, 0);
    let idx_rva = img.va_to_rva(tls.address_of_index).unwrap();
    assert_eq!(img.read_u32_rva(idx_rva), Some(0x12345));
    // CallBacks follows AddressOfIndex directly.
    assert_eq!(tls.address_of_callbacks, tls.address_of_index + 4);
    assert_eq!(tls.callbacks.len(), 1);
    let cb = &tls.callbacks[0];
    assert!(cb.in_image && cb.executable == Some(true));
    // `tls` is the first code in the section.
    assert_eq!(cb.rva, Some(u64::from(img.sections()[0].virtual_address)));
}

/// goblin lld_malformed_tls_callbacks_64: PE32+, a valid callback in .text followed by the
/// garbage entry 0x0807060504030201 (outside the image), then NULL. We report both.
#[test]
fn goblin_malformed_callbacks_are_reported_not_dropped() {
    let bytes = corpus_file("goblin/tests/bins/pe/lld_malformed_tls_callbacks_64.exe.bin");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    assert_eq!(img.format(), preentry_pe::Format::Pe32Plus);
    let tls = tls_of(&bytes);
    assert_eq!(tls.callbacks.len(), 2);
    let (a, b) = (&tls.callbacks[0], &tls.callbacks[1]);
    assert!(a.in_image && a.section.as_deref() == Some(".text") && a.executable == Some(true));
    assert_eq!(b.va, 0x0807_0605_0403_0201);
    assert!(!b.in_image && b.rva.is_none() && b.section.is_none() && b.executable.is_none());
    assert!(tls.terminated);
    let json = serde_json::to_value(ImageFacts::from_image(&img, &NoOutside)).unwrap();
    assert_eq!(json["tls"]["callbacks"][1]["rva"], serde_json::Value::Null);
    assert_eq!(json["tls"]["callbacks"][0]["section"], ".text");
    assert_eq!(json["format"], "pe32+");
}

/// The `inspect --json` contract: names and types of the serialized facts.
#[test]
fn json_contract_names_and_types() {
    let bytes = corkami("tls.exe");
    let img = PeImage::parse(&bytes, Layout::File).unwrap();
    let v = serde_json::to_value(ImageFacts::from_image(&img, &NoOutside)).unwrap();
    assert_eq!(v["machine"], 0x14c);
    assert_eq!(v["format"], "pe32");
    for k in ["image_base", "entry_point_rva", "size_of_image"] {
        assert!(v[k].is_u64(), "{k}");
    }
    let s = &v["sections"][0];
    assert!(s["name"].is_string());
    for k in ["virtual_address", "virtual_size", "characteristics"] {
        assert!(s[k].is_u64(), "{k}");
    }
    let t = &v["tls"];
    for k in [
        "start_address_of_raw_data",
        "end_address_of_raw_data",
        "address_of_index",
        "address_of_callbacks",
        "size_of_zero_fill",
        "characteristics",
    ] {
        assert!(t[k].is_u64(), "{k}");
    }
    assert!(t["callbacks_terminated"].is_boolean());
    let cb = &t["callbacks"][0];
    assert!(cb["va"].is_u64() && cb["rva"].is_u64() && cb["section"].is_string());

    let none = corpus_file("goblin/tests/bins/pe/lld_no_tls_64.exe.bin");
    let img = PeImage::parse(&none, Layout::File).unwrap();
    let v = serde_json::to_value(ImageFacts::from_image(&img, &NoOutside)).unwrap();
    assert!(v["tls"].is_null());
    assert_eq!(v["format"], "pe32+");
}
