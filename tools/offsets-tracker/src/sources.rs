//! Telling why a struct is missing from a program's DWARF: the version has no such
//! struct (recording it absent is right), or the version declares it and the program
//! does not use it (recording it absent is wrong: `programs/` must use it).
//!
//! The judge is the source the build compiled: `go list` (same toolchain, same build
//! tags) names each package's files, and those are searched for the declaration.

use gosight_goexe::modules::package_of;

use crate::gobuild::Package;

/// What the compiled sources say about a struct the DWARF does not describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Not declared (or only as an alias) in the files the build compiled: absent.
    NotDeclared,
    /// Declared in the compiled files, yet not in the DWARF: the program does not
    /// use it, and "absent" is probably wrong.
    Declared,
    /// Cannot tell: a compiler-made type, or the sources are not at hand.
    Unknown,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::NotDeclared => "not declared in the sources built",
            Verdict::Declared => "DECLARED in the sources built: the program does not use it, check programs/",
            Verdict::Unknown => "sources not checked",
        }
    }
}

/// The packages (`go list` arguments) that declare `structs`, excluding
/// compiler-made types (`noalg.map.group[...]`), which no package declares.
pub fn packages_of<'a>(structs: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = structs.into_iter().filter(|s| !s.contains('[')).map(package_of).collect();
    out.sort();
    out.dedup();
    out
}

/// The verdict on `strukt` given what `go list` listed (`None`: could not list).
pub fn verdict(listed: Option<&[Package]>, strukt: &str) -> Verdict {
    let Some(listed) = listed else { return Verdict::Unknown };
    if strukt.contains('[') {
        return Verdict::Unknown;
    }
    let pkg = package_of(strukt);
    let name = &strukt[pkg.len() + 1..];
    // A package that does not exist in this version declares nothing.
    let Some(p) = listed.iter().find(|p| p.path == pkg) else { return Verdict::NotDeclared };
    for f in &p.files {
        match std::fs::read_to_string(f) {
            Ok(text) if declares(&text, name) => return Verdict::Declared,
            Ok(_) => {}
            Err(_) => return Verdict::Unknown,
        }
    }
    Verdict::NotDeclared
}

/// Whether Go source `text` declares a type `name` (not an alias), at top level or
/// in a `type ( ... )` block.
pub fn declares(text: &str, name: &str) -> bool {
    let mut in_block = false;
    for line in text.lines() {
        let rest = if in_block {
            if line.trim_start().starts_with(')') && !line.starts_with("\t\t") {
                in_block = false;
                continue;
            }
            match line.strip_prefix('\t') {
                Some(r) if !r.starts_with(['\t', ' ']) => r,
                _ => continue,
            }
        } else if let Some(r) = line.strip_prefix("type ") {
            if r.trim() == "(" {
                in_block = true;
                continue;
            }
            r
        } else {
            continue;
        };
        let Some(after) = rest.strip_prefix(name) else { continue };
        match after.chars().next() {
            Some('[') => return !after.contains(" = ") && !after.contains("]="),
            Some(' ' | '\t') if !after.trim_start().starts_with('=') => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_and_aliases() {
        let src = "package runtime\n\ntype itab = abi.ITab\n\ntype hmap struct {\n\tcount int\n}\n\ntype (\n\tbmap struct{}\n\tw = int\n\tStream struct {\n\t\tctx int\n\t}\n)\n\ntype G[T any] struct{ x T }\n";
        assert!(!declares(src, "itab"));
        assert!(declares(src, "hmap"));
        assert!(declares(src, "bmap"));
        assert!(!declares(src, "w"));
        assert!(declares(src, "Stream"));
        assert!(!declares(src, "ctx"));
        assert!(declares(src, "G"));
        assert!(!declares(src, "hma"));
        assert!(!declares(src, "count"));
    }

    #[test]
    fn verdicts() {
        let dir = std::env::temp_dir().join(format!("offsets-tracker-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.go");
        std::fs::write(&file, "package transport\n\ntype ServerStream struct{}\n").unwrap();
        let listed = [Package { path: "example.com/m/transport".into(), files: vec![file] }];
        let v = |s| verdict(Some(&listed), s);
        assert_eq!(v("example.com/m/transport.ServerStream"), Verdict::Declared);
        assert_eq!(v("example.com/m/transport.headerFrame"), Verdict::NotDeclared);
        assert_eq!(v("example.com/m/gone.T"), Verdict::NotDeclared);
        assert_eq!(v("noalg.map.group[string][]string"), Verdict::Unknown);
        assert_eq!(verdict(None, "example.com/m/transport.ServerStream"), Verdict::Unknown);
        assert_eq!(packages_of(["a/b.C", "a/b.D", "noalg.map.group[int]int", "c.E"]), ["a/b", "c"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
