//! The Go map fields `include/go_header.h` reads to find the `Traceparent` header in
//! a `net/http.Header` (classic `runtime.hmap` before Go 1.24, Swiss tables
//! `internal/runtime/maps.Map` from Go 1.24), and the result codes of its
//! `go_header_find_traceparent`.
//!
//! A probe whose C program includes `go_header.h` lists [`FIELDS`] among its field
//! groups: `fields: &[FIELDS, crate::go_header::FIELDS]`. Every field is optional:
//! a binary has one map implementation, and which struct's offsets resolve
//! (the other's are `OFF_ABSENT`) is how the C side picks the layout — never the
//! Go version. When neither resolves, the lookup returns "layout unknown" and the
//! probe just sees no incoming context.
//!
//! Offsets seen (DWARF, linux/amd64), identical from Go 1.22 to 1.27:
//! `runtime.hmap` {count 0, flags 8, B 9, buckets 16, oldbuckets 24};
//! `internal/runtime/maps.Map` {used 0, dirPtr 16, dirLen 24}, `table.groups` 16,
//! `groupsReference` {data 0, lengthMask 8}, `noalg.map.group[string][]string`
//! {slots 8} (or {keys 8, elems 136} with GOEXPERIMENT=mapsplitgroup).

use std::collections::HashMap;

use crate::{std_field, FieldSpec, OFF_ABSENT};

pub const HMAP: &str = "runtime.hmap";
pub const SWISS_MAP: &str = "internal/runtime/maps.Map";
pub const SWISS_TABLE: &str = "internal/runtime/maps.table";
pub const SWISS_GROUPS_REF: &str = "internal/runtime/maps.groupsReference";
/// The compiler-generated group type of `map[string][]string` (Go >= 1.24).
pub const SWISS_GROUP: &str = "noalg.map.group[string][]string";

/// Offsets `go_header.h` needs, as `off_hmap_*` / `off_swiss_*` globals.
pub const FIELDS: &[FieldSpec] = &[
    std_field("off_hmap_count", HMAP, "count", false),
    std_field("off_hmap_flags", HMAP, "flags", false),
    std_field("off_hmap_b", HMAP, "B", false),
    std_field("off_hmap_buckets", HMAP, "buckets", false),
    std_field("off_hmap_oldbuckets", HMAP, "oldbuckets", false),
    std_field("off_swiss_used", SWISS_MAP, "used", false),
    std_field("off_swiss_dir_ptr", SWISS_MAP, "dirPtr", false),
    std_field("off_swiss_dir_len", SWISS_MAP, "dirLen", false),
    std_field("off_swiss_table_groups", SWISS_TABLE, "groups", false),
    std_field("off_swiss_groups_data", SWISS_GROUPS_REF, "data", false),
    std_field("off_swiss_groups_mask", SWISS_GROUPS_REF, "lengthMask", false),
    std_field("off_swiss_group_slots", SWISS_GROUP, "slots", false),
    std_field("off_swiss_group_keys", SWISS_GROUP, "keys", false),
    std_field("off_swiss_group_elems", SWISS_GROUP, "elems", false),
];

/// Result codes of `go_header_find_traceparent` (`GO_HDR_*`).
pub const FOUND: i32 = 1;
pub const ABSENT: i32 = 0;
pub const E_VALUE: i32 = -1;
pub const E_LIMIT: i32 = -2;
pub const E_READ: i32 = -3;
pub const E_LAYOUT: i32 = -4;

/// Which map implementation the resolved offsets select (the C side's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapLayout {
    /// `runtime.hmap` buckets (Go < 1.24, or GOEXPERIMENT=noswissmap).
    Classic,
    /// Swiss tables with interleaved key/elem slots.
    Swiss,
    /// Swiss tables with GOEXPERIMENT=mapsplitgroup (keys, then elems).
    SwissSplit,
    /// Neither layout's offsets are all known: no header is ever found.
    Unknown,
}

impl MapLayout {
    /// The layout `go_header.h` will walk with these offsets (keyed by global name,
    /// as in `ProbeInputs::fields`; missing = `OFF_ABSENT`).
    pub fn of(fields: &HashMap<&str, u64>) -> MapLayout {
        let known = |g: &str| fields.get(g).is_some_and(|&v| v != OFF_ABSENT);
        let classic = ["off_hmap_count", "off_hmap_flags", "off_hmap_b", "off_hmap_buckets", "off_hmap_oldbuckets"];
        let swiss = [
            "off_swiss_used",
            "off_swiss_dir_ptr",
            "off_swiss_dir_len",
            "off_swiss_table_groups",
            "off_swiss_groups_data",
            "off_swiss_groups_mask",
        ];
        if known("off_hmap_buckets") {
            return if classic.iter().all(|g| known(g)) { MapLayout::Classic } else { MapLayout::Unknown };
        }
        if !swiss.iter().all(|g| known(g)) {
            return MapLayout::Unknown;
        }
        if known("off_swiss_group_keys") || known("off_swiss_group_elems") {
            MapLayout::SwissSplit
        } else {
            MapLayout::Swiss
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_are_prefixed_and_unique() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.global).collect();
        assert!(names.iter().all(|g| g.starts_with("off_hmap_") || g.starts_with("off_swiss_")));
        assert!(FIELDS.iter().all(|f| !f.required));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
    }

    #[test]
    fn layout_follows_resolved_offsets() {
        let classic: HashMap<&str, u64> = [
            ("off_hmap_count", 0),
            ("off_hmap_flags", 8),
            ("off_hmap_b", 9),
            ("off_hmap_buckets", 16),
            ("off_hmap_oldbuckets", 24),
            ("off_swiss_used", OFF_ABSENT),
        ]
        .into();
        assert_eq!(MapLayout::of(&classic), MapLayout::Classic);
        let mut swiss: HashMap<&str, u64> = [
            ("off_swiss_used", 0),
            ("off_swiss_dir_ptr", 16),
            ("off_swiss_dir_len", 24),
            ("off_swiss_table_groups", 16),
            ("off_swiss_groups_data", 0),
            ("off_swiss_groups_mask", 8),
            ("off_swiss_group_slots", 8),
            ("off_hmap_buckets", OFF_ABSENT),
        ]
        .into();
        assert_eq!(MapLayout::of(&swiss), MapLayout::Swiss);
        swiss.insert("off_swiss_group_keys", 8);
        assert_eq!(MapLayout::of(&swiss), MapLayout::SwissSplit);
        assert_eq!(MapLayout::of(&HashMap::new()), MapLayout::Unknown);
    }
}
