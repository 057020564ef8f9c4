//! Every struct field gosight reads from a target: what the offsets database must
//! hold (`offsets-tracker` measures exactly these), and the structs the sidecar reads
//! from a binary's DWARF.
//!
//! Here rather than in the sidecar so that `offsets-tracker` reaches it without the
//! sidecar crate; the itab reader's fields come from `gosight-goexe`, which reads
//! them.

use crate::ALL_PROBES;

/// Every field the probes and the itab reader may read, `a|b` alternatives split:
/// (`struct`, `field`) pairs, sorted and without duplicates.
pub fn tracked_fields() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = ALL_PROBES
        .iter()
        .flat_map(|p| p.all_fields())
        .map(|f| (f.strukt, f.field))
        .chain(gosight_goexe::itabs::FIELDS.iter().copied())
        .flat_map(|(strukt, field)| field.split('|').map(move |alt| (strukt, alt)))
        .collect();
    out.sort();
    out.dedup();
    out
}
