//! Field-level diff of two [`ImageFacts`] (typically the disk image relocated to the actual
//! base, vs the image read from memory).
//!
//! Field names (stable; `scan` reports them):
//! * `dos_header.e_magic`, `dos_header.e_lfanew`
//! * `file_header.<field>` (`machine`, `number_of_sections`, `time_date_stamp`, …)
//! * `optional_header.<field>` (`address_of_entry_point`, `image_base`, `size_of_image`, …;
//!   `base_of_data` is absent in PE32+)
//! * `data_directory.<name>.virtual_address`, `data_directory.<name>.size` with `<name>` from
//!   [`crate::DATA_DIRECTORY_NAMES`] (a missing entry is `null`)
//! * `section[i]` (`true` vs `null` when a section exists on one side only), then
//!   `section[i].<field>` (`name`, `virtual_size`, `virtual_address`, `size_of_raw_data`,
//!   `pointer_to_raw_data`, `pointer_to_relocations`, `pointer_to_linenumbers`,
//!   `number_of_relocations`, `number_of_linenumbers`, `characteristics`)
//! * `tls` (`true` vs `null` when one side has no TLS directory), `tls_error`
//! * `tls.start_address_of_raw_data`, `tls.end_address_of_raw_data`, `tls.address_of_index`,
//!   `tls.address_of_callbacks`, `tls.size_of_zero_fill`, `tls.characteristics`
//! * `tls.callbacks[i]` (the entry's VA; `null` for a slot one side lacks),
//!   `tls.callbacks_terminated`, `tls.callbacks_hit_limit`
//!
//! Derived facts (RVAs, section classification, relocation coverage) are not compared: they
//! follow from the compared fields.

use serde::Serialize;

use crate::facts::ImageFacts;
use crate::image::{DATA_DIRECTORY_NAMES, Section};
use crate::tls::TlsInfo;

/// Fields the loader itself writes in memory, which therefore differ from the relocated file
/// for a legitimate image: `OptionalHeader.ImageBase` (Windows writes the actual base; Wine's
/// behaviour may differ — exclude it when comparing against Wine memory).
pub const LOADER_WRITTEN_FIELDS: &[&str] = &["optional_header.image_base"];

/// A value in a [`FieldDiff`]. Serialized untagged: integer, bool, string, or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// Integer field.
    Int(u64),
    /// Boolean field (also `true` for "present").
    Bool(bool),
    /// Text (section names: lossy UTF-8, or `hex:<bytes>` when not valid UTF-8).
    Text(String),
    /// The field does not exist on this side.
    Absent,
}

/// One differing field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// Field name, e.g. `tls.callbacks[0]`, `section[2].characteristics`.
    pub field: String,
    /// Value in the expected image.
    pub expected: FieldValue,
    /// Value in the observed image.
    pub observed: FieldValue,
}

impl std::fmt::Display for FieldValue {
    /// Integers in hex (`0x401000`), `true`/`false`, text as is, `absent`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Int(v) => write!(f, "{v:#x}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Text(t) => f.write_str(t),
            FieldValue::Absent => f.write_str("absent"),
        }
    }
}

impl std::fmt::Display for FieldDiff {
    /// `tls.callbacks[0]: expected 0x401000, observed 0x1a00000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, observed {}",
            self.field, self.expected, self.observed
        )
    }
}

/// Options for [`diff_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions<'a> {
    /// Field names to leave out (exact names, e.g. [`LOADER_WRITTEN_FIELDS`]).
    pub ignore: &'a [&'a str],
}

/// Every differing field of `expected` vs `observed`, in a stable order. Relocation-normalise
/// first: pass `file_facts.relocated_to(actual_base)` as `expected`.
pub fn diff(expected: &ImageFacts, observed: &ImageFacts) -> Vec<FieldDiff> {
    diff_with(expected, observed, &DiffOptions::default())
}

/// [`diff`] with options.
pub fn diff_with(
    expected: &ImageFacts,
    observed: &ImageFacts,
    options: &DiffOptions<'_>,
) -> Vec<FieldDiff> {
    let mut d = Differ {
        out: Vec::new(),
        ignore: options.ignore,
    };
    let (e, o) = (expected, observed);
    d.int(
        "dos_header.e_magic",
        e.dos_header.e_magic,
        o.dos_header.e_magic,
    );
    d.int(
        "dos_header.e_lfanew",
        e.dos_header.e_lfanew,
        o.dos_header.e_lfanew,
    );

    macro_rules! ints {
        ($prefix:literal, $a:expr, $b:expr, [$($f:ident),* $(,)?]) => {
            $( d.int(concat!($prefix, ".", stringify!($f)), $a.$f, $b.$f); )*
        };
    }
    ints!(
        "file_header",
        e.file_header,
        o.file_header,
        [
            machine,
            number_of_sections,
            time_date_stamp,
            pointer_to_symbol_table,
            number_of_symbols,
            size_of_optional_header,
            characteristics,
        ]
    );
    ints!(
        "optional_header",
        e.optional_header,
        o.optional_header,
        [
            magic,
            major_linker_version,
            minor_linker_version,
            size_of_code,
            size_of_initialized_data,
            size_of_uninitialized_data,
            address_of_entry_point,
            base_of_code,
        ]
    );
    d.value(
        || "optional_header.base_of_data".into(),
        opt_int(e.optional_header.base_of_data),
        opt_int(o.optional_header.base_of_data),
    );
    ints!(
        "optional_header",
        e.optional_header,
        o.optional_header,
        [
            image_base,
            section_alignment,
            file_alignment,
            major_operating_system_version,
            minor_operating_system_version,
            major_image_version,
            minor_image_version,
            major_subsystem_version,
            minor_subsystem_version,
            win32_version_value,
            size_of_image,
            size_of_headers,
            check_sum,
            subsystem,
            dll_characteristics,
            size_of_stack_reserve,
            size_of_stack_commit,
            size_of_heap_reserve,
            size_of_heap_commit,
            loader_flags,
            number_of_rva_and_sizes,
        ]
    );

    for (i, name) in DATA_DIRECTORY_NAMES.iter().enumerate() {
        let (a, b) = (e.data_directories.get(i), o.data_directories.get(i));
        d.value(
            || format!("data_directory.{name}.virtual_address"),
            opt_int(a.map(|x| x.virtual_address)),
            opt_int(b.map(|x| x.virtual_address)),
        );
        d.value(
            || format!("data_directory.{name}.size"),
            opt_int(a.map(|x| x.size)),
            opt_int(b.map(|x| x.size)),
        );
    }

    let n = e.sections.len().max(o.sections.len());
    for i in 0..n {
        match (e.sections.get(i), o.sections.get(i)) {
            (Some(a), Some(b)) => d.section(i, a, b),
            (a, b) => d.value(
                || format!("section[{i}]"),
                present(a.is_some()),
                present(b.is_some()),
            ),
        }
    }

    d.value(
        || "tls_error".into(),
        opt_text(e.tls_error.as_deref()),
        opt_text(o.tls_error.as_deref()),
    );
    match (&e.tls, &o.tls) {
        (Some(a), Some(b)) => d.tls(a, b),
        (a, b) => d.value(|| "tls".into(), present(a.is_some()), present(b.is_some())),
    }
    d.out
}

struct Differ<'a> {
    out: Vec<FieldDiff>,
    ignore: &'a [&'a str],
}

impl Differ<'_> {
    fn value(&mut self, name: impl FnOnce() -> String, e: FieldValue, o: FieldValue) {
        if e == o {
            return;
        }
        let field = name();
        if self.ignore.iter().any(|&i| i == field) {
            return;
        }
        self.out.push(FieldDiff {
            field,
            expected: e,
            observed: o,
        });
    }

    fn int<T: Into<u64> + PartialEq + Copy>(&mut self, name: &'static str, e: T, o: T) {
        if e != o {
            self.value(
                || name.to_owned(),
                FieldValue::Int(e.into()),
                FieldValue::Int(o.into()),
            );
        }
    }

    fn section(&mut self, i: usize, a: &Section, b: &Section) {
        if a.raw_name != b.raw_name {
            self.value(
                || format!("section[{i}].name"),
                section_name(a),
                section_name(b),
            );
        }
        macro_rules! fields {
            ($($f:ident),*) => {
                $(
                    if a.$f != b.$f {
                        self.value(
                            || format!(concat!("section[{}].", stringify!($f)), i),
                            FieldValue::Int(a.$f.into()),
                            FieldValue::Int(b.$f.into()),
                        );
                    }
                )*
            };
        }
        fields!(
            virtual_size,
            virtual_address,
            size_of_raw_data,
            pointer_to_raw_data,
            pointer_to_relocations,
            pointer_to_linenumbers,
            number_of_relocations,
            number_of_linenumbers,
            characteristics
        );
    }

    fn tls(&mut self, a: &TlsInfo, b: &TlsInfo) {
        self.int(
            "tls.start_address_of_raw_data",
            a.start_address_of_raw_data,
            b.start_address_of_raw_data,
        );
        self.int(
            "tls.end_address_of_raw_data",
            a.end_address_of_raw_data,
            b.end_address_of_raw_data,
        );
        self.int(
            "tls.address_of_index",
            a.address_of_index,
            b.address_of_index,
        );
        self.int(
            "tls.address_of_callbacks",
            a.address_of_callbacks,
            b.address_of_callbacks,
        );
        self.int(
            "tls.size_of_zero_fill",
            a.size_of_zero_fill,
            b.size_of_zero_fill,
        );
        self.int("tls.characteristics", a.characteristics, b.characteristics);
        let n = a.callbacks.len().max(b.callbacks.len());
        for i in 0..n {
            let (x, y) = (a.callbacks.get(i), b.callbacks.get(i));
            self.value(
                || format!("tls.callbacks[{i}]"),
                opt_int(x.map(|s| s.va)),
                opt_int(y.map(|s| s.va)),
            );
        }
        if a.terminated != b.terminated {
            self.value(
                || "tls.callbacks_terminated".into(),
                FieldValue::Bool(a.terminated),
                FieldValue::Bool(b.terminated),
            );
        }
        if a.hit_limit != b.hit_limit {
            self.value(
                || "tls.callbacks_hit_limit".into(),
                FieldValue::Bool(a.hit_limit),
                FieldValue::Bool(b.hit_limit),
            );
        }
    }
}

fn opt_int<T: Into<u64>>(v: Option<T>) -> FieldValue {
    v.map_or(FieldValue::Absent, |v| FieldValue::Int(v.into()))
}

fn opt_text(v: Option<&str>) -> FieldValue {
    v.map_or(FieldValue::Absent, |v| FieldValue::Text(v.to_owned()))
}

fn present(p: bool) -> FieldValue {
    if p {
        FieldValue::Bool(true)
    } else {
        FieldValue::Absent
    }
}

fn section_name(s: &Section) -> FieldValue {
    match &s.name_hex {
        Some(h) => FieldValue::Text(format!("hex:{h}")),
        None => FieldValue::Text(s.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_serialize_untagged() {
        let d = FieldDiff {
            field: "tls".into(),
            expected: FieldValue::Absent,
            observed: FieldValue::Bool(true),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"field":"tls","expected":null,"observed":true}"#
        );
        assert_eq!(serde_json::to_string(&FieldValue::Int(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&FieldValue::Text("a".into())).unwrap(),
            r#""a""#
        );
    }

    #[test]
    fn display_is_hex_and_names_the_field() {
        let d = FieldDiff {
            field: "tls.callbacks[1]".into(),
            expected: FieldValue::Absent,
            observed: FieldValue::Int(0x401000),
        };
        assert_eq!(
            d.to_string(),
            "tls.callbacks[1]: expected absent, observed 0x401000"
        );
    }

    #[test]
    fn helpers_map_options() {
        assert_eq!(opt_int(None::<u32>), FieldValue::Absent);
        assert_eq!(opt_int(Some(3u16)), FieldValue::Int(3));
        assert_eq!(present(false), FieldValue::Absent);
        assert_eq!(present(true), FieldValue::Bool(true));
    }

    #[test]
    fn ignore_list_drops_only_named_fields() {
        let mut d = Differ {
            out: Vec::new(),
            ignore: LOADER_WRITTEN_FIELDS,
        };
        d.int("optional_header.image_base", 1u64, 2u64);
        d.int("optional_header.size_of_image", 1u32, 2u32);
        d.int("optional_header.check_sum", 5u32, 5u32);
        assert_eq!(d.out.len(), 1);
        assert_eq!(d.out[0].field, "optional_header.size_of_image");
    }
}
