//! Go's itab table read from the binary: for every (interface, concrete type) pair the
//! linker emitted an itab for, its address and both type names.
//!
//! Probes compare an interface value's itab pointer against known itabs (is this
//! `http.ResponseWriter` a `*http.response`? is this `error` a grpc `*status.Error`?)
//! and the decoders name error types by it. The symbol table names itabs
//! (`go:itab.*net.OpError,error`), but stripped binaries have no symbol table, so
//! this reads what the runtime itself reads: `runtime.firstmoduledata.itablinks`, each
//! itab's interface and type descriptors, and their names in the type section. The
//! layouts of those runtime structs come from the resolver like any probe field.

use gosight_uprobes::{std_field, FieldSpec};

/// The runtime layouts this reader needs (tracked in the offsets database).
pub const FIELDS: &[FieldSpec] = &[
    std_field("moduledata_types", "runtime.moduledata", "types", true),
    std_field("moduledata_etypes", "runtime.moduledata", "etypes", true),
    std_field("moduledata_itablinks", "runtime.moduledata", "itablinks", true),
    std_field("itab_inter", "internal/abi.ITab", "Inter", false),
    std_field("itab_type", "internal/abi.ITab", "Type", false),
    std_field("itab_inter_go122", "runtime.itab", "inter", false),
    std_field("itab_type_go122", "runtime.itab", "_type", false),
    std_field("type_tflag", "internal/abi.Type", "TFlag", true),
    std_field("type_kind", "internal/abi.Type", "Kind_", true),
    std_field("type_str", "internal/abi.Type", "Str", true),
    std_field("ptrtype_elem", "internal/abi.PtrType", "Elem", true),
    std_field("interfacetype_pkgpath", "internal/abi.InterfaceType", "PkgPath", true),
    std_field("uncommontype_pkgpath", "internal/abi.UncommonType", "PkgPath", true),
];
