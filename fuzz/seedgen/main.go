// Command seedgen turns real Go executables into small seed inputs for gosight's fuzz
// targets (see ../src/lib.rs). Whole executables are megabytes, and most of their bytes
// are code and data no reader looks at, so a fuzzer mutating them mostly wastes its
// time. For each input it writes, under -out:
//
//	elf/NAME-mini          a compact but complete executable: ELF and program
//	                       headers, section headers (the bulky sections emptied),
//	                       .go.buildinfo, a .gopclntab pruned to the kept functions,
//	                       a .symtab with just their symbols and a few data ones,
//	                       the code of the kept functions and runtime.firstmoduledata
//	                       patched to the pruned table; opens like the original and
//	                       finds the kept functions with the same offsets
//	elf/NAME-mini-nosections  the same without section headers (found by scanning
//	                       segments, as in a stripped binary with sections removed)
//	elf/NAME-head          the first 4 KiB (headers of a truncated file)
//	pclntab-full/NAME      the .gopclntab section as it is (megabytes: run once, not
//	                       mutated)
//	pclntab/NAME-mini      the pruned table
//	buildinfo/NAME-blob    the .go.buildinfo section
//	buildinfo/NAME-text    its version and module info as text
//	dwarf/NAME-structs     (when the input has DWARF) an ELF with only .debug_abbrev
//	                       and a .debug_info holding, per unit, the wanted struct
//	                       types; -z and -zdebug variants with zlib-compressed sections
//
// Kept functions: those named by -keep, plus every so many others up to -funcs.
// Standard library only, so `go run` needs nothing from the network.
package main

import (
	"bytes"
	"compress/zlib"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

var le = binary.LittleEndian

func main() {
	out := flag.String("out", "", "output directory (elf/, pclntab/, buildinfo/, dwarf/ are made in it)")
	keep := flag.String("keep", "main.main,runtime.main", "comma-separated functions to keep")
	structs := flag.String("structs", "runtime.g", "comma-separated struct types to keep in the DWARF seed")
	funcs := flag.Int("funcs", 24, "functions to keep in all (named ones first)")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: seedgen -out DIR [-keep f,g] [-structs s,t] EXECUTABLE...")
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		if err := seeds(path, *out, split(*keep), split(*structs), *funcs); err != nil {
			fmt.Fprintf(os.Stderr, "seedgen: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func split(s string) map[string]bool {
	m := map[string]bool{}
	for _, x := range strings.Split(s, ",") {
		if x != "" {
			m[x] = true
		}
	}
	return m
}

func write(dir, sub, name string, data []byte) error {
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, sub, name), data, 0o644)
}

func seeds(path, out string, keep, structs map[string]bool, nfuncs int) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return errors.New("only 64-bit little-endian executables")
	}
	name := filepath.Base(path)
	head := raw[:min(len(raw), 4096)]
	if err := write(out, "elf", name+"-head", head); err != nil {
		return err
	}
	if s := f.Section(".go.buildinfo"); s != nil {
		blob, _ := s.Data()
		if err := write(out, "buildinfo", name+"-blob", blob); err != nil {
			return err
		}
		if text, ok := buildinfoText(blob); ok {
			if err := write(out, "buildinfo", name+"-text", text); err != nil {
				return err
			}
		}
	}
	pcln := f.Section(".gopclntab")
	if pcln == nil {
		pcln = f.Section(".data.rel.ro.gopclntab")
	}
	if pcln == nil {
		return errors.New("no .gopclntab")
	}
	table, err := pcln.Data()
	if err != nil {
		return err
	}
	if err := write(out, "pclntab-full", name, table); err != nil {
		return err
	}
	t, err := parsePclntab(table)
	if err != nil {
		return err
	}
	kept := t.choose(keep, nfuncs)
	pruned, names := t.prune(kept)
	if err := write(out, "pclntab", name+"-mini", pruned); err != nil {
		return err
	}
	mini, err := miniELF(raw, f, pcln, t, kept, pruned, names)
	if err != nil {
		return err
	}
	if err := write(out, "elf", name+"-mini", mini); err != nil {
		return err
	}
	noSections := append([]byte(nil), mini...)
	le.PutUint64(noSections[0x28:], 0) // e_shoff
	le.PutUint16(noSections[0x3c:], 0) // e_shnum
	le.PutUint16(noSections[0x3e:], 0) // e_shstrndx
	if err := write(out, "elf", name+"-mini-nosections", noSections); err != nil {
		return err
	}
	if f.Section(".debug_info") != nil {
		for _, z := range []string{"", "z", "zdebug"} {
			d, err := dwarfELF(f, structs, z)
			if err != nil {
				return fmt.Errorf("DWARF: %w", err)
			}
			suffix := "-structs"
			if z != "" {
				suffix += "-" + z
			}
			if err := write(out, "dwarf", name+suffix, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildinfoText is the blob's Go version and module info (sentinels removed) as
// "VERSION\nMODINFO", the text form the buildinfo target also reads.
func buildinfoText(blob []byte) ([]byte, bool) {
	if len(blob) < 32 || blob[15]&2 == 0 {
		return nil, false
	}
	rest := blob[32:]
	str := func() ([]byte, bool) {
		n, used := binary.Uvarint(rest)
		if used <= 0 || uint64(len(rest)-used) < n {
			return nil, false
		}
		s := rest[used : used+int(n)]
		rest = rest[used+int(n):]
		return s, true
	}
	version, ok1 := str()
	modinfo, ok2 := str()
	if !ok1 || !ok2 {
		return nil, false
	}
	if len(modinfo) >= 33 && modinfo[len(modinfo)-17] == '\n' {
		modinfo = modinfo[16 : len(modinfo)-16]
	}
	return append(append(append([]byte(nil), version...), '\n'), modinfo...), true
}

// pclntab is a parsed Go 1.18+ function table (runtime/symtab.go pcHeader).
type pclntab struct {
	data                        []byte
	go118                       bool
	ptr                         int
	nfunc                       int
	funcnametab, pctab, functab int
	headerWords                 []uint64
}

func (t *pclntab) word(i int) uint64 {
	at := 8 + i*t.ptr
	if t.ptr == 4 {
		return uint64(le.Uint32(t.data[at:]))
	}
	return le.Uint64(t.data[at:])
}

func parsePclntab(data []byte) (*pclntab, error) {
	if len(data) < 16 {
		return nil, errors.New("pclntab truncated")
	}
	magic := le.Uint32(data)
	if magic != 0xfffffff1 && magic != 0xfffffff0 {
		return nil, fmt.Errorf("pclntab magic %#x: Go 1.18 or newer needed", magic)
	}
	t := &pclntab{data: data, go118: magic == 0xfffffff0, ptr: int(data[7])}
	for i := 0; i < 8; i++ {
		t.headerWords = append(t.headerWords, t.word(i))
	}
	t.nfunc = int(t.word(0))
	t.funcnametab, t.pctab, t.functab = int(t.word(3)), int(t.word(6)), int(t.word(7))
	return t, nil
}

func (t *pclntab) recordLen() int {
	if t.go118 {
		return 40
	}
	return 44
}

func (t *pclntab) entry(i int) uint32 { return le.Uint32(t.data[t.functab+8*i:]) }

func (t *pclntab) record(i int) []byte {
	off := t.functab + int(le.Uint32(t.data[t.functab+8*i+4:]))
	return t.data[off : off+t.recordLen()]
}

func (t *pclntab) name(i int) string {
	rest := t.data[t.funcnametab+int(le.Uint32(t.record(i)[4:])):]
	return string(rest[:bytes.IndexByte(rest, 0)])
}

// pcTable is the raw pc-value table at off in pctab (up to its terminating zero).
func (t *pclntab) pcTable(off uint32) []byte {
	start := t.pctab + int(off)
	at, first := start, true
	for {
		v, n := binary.Uvarint(t.data[at:])
		at += n
		if v == 0 && !first {
			return t.data[start:at]
		}
		first = false
		_, n = binary.Uvarint(t.data[at:])
		at += n
	}
}

// choose picks the functions to keep: every one named in keep, then every so many
// others up to n in all, ascending.
func (t *pclntab) choose(keep map[string]bool, n int) []int {
	var kept []int
	for i := 0; i < t.nfunc; i++ {
		if keep[t.name(i)] {
			kept = append(kept, i)
		}
	}
	for step, i := max(1, t.nfunc/max(1, n-len(kept))), 0; i < t.nfunc && len(kept) < n; i += step {
		kept = append(kept, i)
	}
	sort.Ints(kept)
	out := kept[:0]
	for i, k := range kept {
		if i == 0 || k != kept[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// prune writes a table of only the kept functions, in the original's layout; it
// returns the table and the kept functions' names.
func (t *pclntab) prune(kept []int) ([]byte, []string) {
	header := 8 + 8*t.ptr
	var names, pctab bytes.Buffer
	pctab.WriteByte(0) // offset 0 means "no table"
	nameOffs, pcspOffs := make([]uint32, len(kept)), make([]uint32, len(kept))
	var list []string
	for j, i := range kept {
		nameOffs[j] = uint32(names.Len())
		names.WriteString(t.name(i))
		names.WriteByte(0)
		list = append(list, t.name(i))
		if pcsp := le.Uint32(t.record(i)[16:]); pcsp != 0 {
			pcspOffs[j] = uint32(pctab.Len())
			pctab.Write(t.pcTable(pcsp))
		}
	}
	funcnametab := header
	pctabOff := funcnametab + names.Len()
	functab := (pctabOff + pctab.Len() + 7) &^ 7
	out := make([]byte, functab+8*len(kept)+4)
	copy(out, t.data[:8])
	copy(out[funcnametab:], names.Bytes())
	copy(out[pctabOff:], pctab.Bytes())
	words := []uint64{uint64(len(kept)), t.headerWords[1], t.headerWords[2], uint64(funcnametab),
		uint64(pctabOff), uint64(pctabOff), uint64(pctabOff), uint64(functab)}
	for i, w := range words {
		at := 8 + i*t.ptr
		if t.ptr == 4 {
			le.PutUint32(out[at:], uint32(w))
		} else {
			le.PutUint64(out[at:], w)
		}
	}
	last := kept[len(kept)-1]
	le.PutUint32(out[functab+8*len(kept):], t.entry(last+1))
	for j, i := range kept {
		funcoff := len(out) - functab
		le.PutUint32(out[functab+8*j:], t.entry(i))
		le.PutUint32(out[functab+8*j+4:], uint32(funcoff))
		rec := append([]byte(nil), t.record(i)...)
		le.PutUint32(rec[4:], nameOffs[j])
		le.PutUint32(rec[16:], pcspOffs[j])
		for _, at := range []int{20, 24, 28, 32} { // pcfile, pcln, npcdata, cuOffset
			le.PutUint32(rec[at:], 0)
		}
		rec[len(rec)-1] = 0 // nfuncdata
		out = append(out, rec...)
	}
	return out, list
}

// A section or segment payload placed in the output file.
type blob struct {
	data   []byte
	offset uint64
}

type prog struct {
	flags elf.ProgFlag
	vaddr uint64
	blob  *blob
	memsz uint64
}

// miniELF writes the compact executable described in the package comment.
func miniELF(raw []byte, f *elf.File, pcln *elf.Section, t *pclntab, kept []int, pruned []byte, names []string) ([]byte, error) {
	flagsAt := func(addr uint64) elf.ProgFlag {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Memsz {
				return p.Flags
			}
		}
		return elf.PF_R
	}
	var progs []prog
	addProg := func(vaddr uint64, data []byte) *blob {
		b := &blob{data: data}
		progs = append(progs, prog{flagsAt(vaddr), vaddr, b, uint64(len(data))})
		return b
	}
	// runtime.firstmoduledata: text start, and the window to keep (patched).
	text, md, mdAddr := uint64(0), []byte(nil), uint64(0)
	origNames := pcln.Addr + uint64(t.funcnametab)
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_WRITE == 0 || s.Type != elf.SHT_PROGBITS || md != nil {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for at := 0; at+24*8 <= len(data); at += 8 {
			if le.Uint64(data[at:]) == pcln.Addr && le.Uint64(data[at+8:]) == origNames {
				end := min(len(data), at+0x400)
				md = append([]byte(nil), data[at:end]...)
				mdAddr = s.Addr + uint64(at)
				text = le.Uint64(md[22*8:])
				break
			}
		}
	}
	if md != nil {
		first, end := uint64(t.entry(kept[0])), uint64(t.entry(kept[len(kept)-1]+1))
		pt, _ := parsePclntab(pruned)
		le.PutUint64(md[8:], pcln.Addr+uint64(pt.funcnametab))
		le.PutUint64(md[16:], uint64(pt.pctab-pt.funcnametab))
		le.PutUint64(md[24:], uint64(pt.pctab-pt.funcnametab))
		le.PutUint64(md[20*8:], text+first)
		le.PutUint64(md[21*8:], text+end)
	}
	if text == 0 {
		text = t.headerWords[2]
	}
	if text == 0 {
		if s := f.Section(".text"); s != nil {
			text = s.Addr
		}
	}
	// The code of the kept functions (what RET scanning reads).
	for j, i := range kept {
		addr := text + uint64(t.entry(i))
		size := uint64(t.entry(i+1) - t.entry(i))
		off, ok := fileOffset(f, addr)
		if !ok || off+size > uint64(len(raw)) {
			return nil, fmt.Errorf("function %s not in the file", names[j])
		}
		addProg(addr, raw[off:off+size])
	}
	// What the itab reader follows from runtime.firstmoduledata.itablinks.
	linkCount := -1 // itablinks entries kept (-1: all)
	if md != nil {
		windows, patches, links := itabWindows(raw, f, md)
		// Only the itabs kept: each reader pass stays short.
		for at, v := range patches {
			le.PutUint64(md[at:], v)
		}
		linkCount = links
		for _, w := range windows {
			if off, ok := fileOffset(f, w[0]); ok && off+w[1]-w[0] <= uint64(len(raw)) {
				addProg(w[0], raw[off:off+w[1]-w[0]])
			}
		}
	}
	// The table 16 bytes into its segment, as in real binaries (it follows .rodata),
	// so that finding it by magic computes an address from a non-zero offset.
	const pclnPad = 16
	pclnBlob := addProg(pcln.Addr-pclnPad, append(make([]byte, pclnPad), pruned...))
	var mdBlob *blob
	if md != nil {
		mdBlob = addProg(mdAddr, md)
	}
	// Section headers: all of them, in order; contents only for the small ones.
	blobs := map[int]*blob{}
	sizes := map[int]uint64{}
	addrs := map[int]uint64{}
	types := map[int]elf.SectionType{}
	var symtabInfo uint32
	for i, s := range f.Sections {
		switch {
		case s == pcln:
			blobs[i] = pclnBlob
		case mdBlob != nil && s.Addr <= mdAddr && mdAddr < s.Addr+s.Size && s.Type == elf.SHT_PROGBITS:
			blobs[i], addrs[i] = mdBlob, mdAddr
		case s.Name == ".go.buildinfo" || s.Name == ".itablink" || s.Name == ".shstrtab" || strings.HasPrefix(s.Name, ".note") ||
			s.Name == ".go.module" || s.Name == ".interp":
			data, err := s.Data()
			if err != nil {
				return nil, err
			}
			if s.Name == ".itablink" && linkCount >= 0 && 8*linkCount <= len(data) {
				data = data[:8*linkCount]
			}
			if s.Flags&elf.SHF_ALLOC != 0 {
				blobs[i] = addProg(s.Addr, data)
			} else {
				blobs[i] = &blob{data: data}
			}
		case s.Type == elf.SHT_SYMTAB:
			symtab, strtab, info, err := pruneSymtab(f, s, names)
			if err != nil {
				return nil, err
			}
			blobs[i], blobs[int(s.Link)] = &blob{data: symtab}, &blob{data: strtab}
			symtabInfo = info
		}
	}
	for i, s := range f.Sections {
		if _, ok := blobs[i]; ok || s.Type == elf.SHT_NULL {
			continue
		}
		if s.Flags&elf.SHF_ALLOC != 0 {
			types[i], sizes[i] = elf.SHT_NOBITS, s.Size // keeps its address and size
		} else {
			sizes[i] = 0
		}
	}
	// Layout: ELF header, program headers, section headers, then the payloads.
	const ehdr, phdr, shdr = 64, 56, 64
	offset := uint64(ehdr + phdr*len(progs) + shdr*len(f.Sections))
	var payload bytes.Buffer
	placed := map[*blob]bool{}
	place := func(b *blob) {
		if b == nil || placed[b] {
			return
		}
		placed[b] = true
		for (offset+uint64(payload.Len()))%16 != 0 {
			payload.WriteByte(0)
		}
		b.offset = offset + uint64(payload.Len())
		payload.Write(b.data)
	}
	for _, p := range progs {
		place(p.blob)
	}
	for i := range f.Sections {
		place(blobs[i])
	}
	var out bytes.Buffer
	hdr := append([]byte(nil), raw[:ehdr]...)
	le.PutUint64(hdr[0x20:], ehdr)                         // e_phoff
	le.PutUint64(hdr[0x28:], uint64(ehdr+phdr*len(progs))) // e_shoff
	le.PutUint16(hdr[0x38:], uint16(len(progs)))           // e_phnum
	out.Write(hdr)
	for _, p := range progs {
		var ph [phdr]byte
		le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
		le.PutUint32(ph[4:], uint32(p.flags))
		le.PutUint64(ph[8:], p.blob.offset)
		le.PutUint64(ph[16:], p.vaddr)
		le.PutUint64(ph[24:], p.vaddr)
		le.PutUint64(ph[32:], uint64(len(p.blob.data)))
		le.PutUint64(ph[40:], p.memsz)
		le.PutUint64(ph[48:], 0x1000)
		out.Write(ph[:])
	}
	for i, s := range f.Sections {
		at := int(le.Uint64(raw[0x28:])) + i*shdr
		sh := append([]byte(nil), raw[at:at+shdr]...)
		le.PutUint32(sh[8:], uint32(uint64(s.Flags)&^uint64(elf.SHF_COMPRESSED)))
		if b := blobs[i]; b != nil {
			skip := uint64(0)
			if b == pclnBlob {
				skip = pclnPad
			}
			le.PutUint64(sh[24:], b.offset+skip)
			le.PutUint64(sh[32:], uint64(len(b.data))-skip)
			if a, ok := addrs[i]; ok {
				le.PutUint64(sh[16:], a)
			}
		} else if s.Type != elf.SHT_NULL {
			le.PutUint64(sh[24:], 0)
			le.PutUint64(sh[32:], sizes[i])
			if ty, ok := types[i]; ok {
				le.PutUint32(sh[4:], uint32(ty))
			}
		}
		if s.Type == elf.SHT_SYMTAB {
			le.PutUint32(sh[44:], symtabInfo)
		}
		out.Write(sh)
	}
	out.Write(payload.Bytes())
	return out.Bytes(), nil
}

// fileOffset is the file offset of a virtual address, through the PT_LOAD segments.
func fileOffset(f *elf.File, addr uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return p.Off + addr - p.Vaddr, true
		}
	}
	return 0, false
}

// pruneSymtab keeps the null symbol, the kept functions' symbols and a few data
// symbols (runtime.buildVersion, runtime.firstmoduledata, io.EOF, some go:itab.*),
// locals first; it returns the table, its string table and sh_info (first global).
func pruneSymtab(f *elf.File, s *elf.Section, funcs []string) ([]byte, []byte, uint32, error) {
	data, err := s.Data()
	if err != nil {
		return nil, nil, 0, err
	}
	strSec := f.Sections[s.Link]
	strs, err := strSec.Data()
	if err != nil {
		return nil, nil, 0, err
	}
	want := map[string]bool{"runtime.buildVersion": true, "runtime.firstmoduledata": true, "io.EOF": true}
	for _, n := range funcs {
		want[n] = true
	}
	itabs := 0
	var locals, globals [][]byte
	var strtab bytes.Buffer
	strtab.WriteByte(0)
	for at := 24; at+24 <= len(data); at += 24 {
		sym := append([]byte(nil), data[at:at+24]...)
		nameOff := le.Uint32(sym)
		if int(nameOff) >= len(strs) {
			continue
		}
		name := string(strs[nameOff : int(nameOff)+bytes.IndexByte(strs[nameOff:], 0)])
		isItab := strings.HasPrefix(name, "go:itab.") &&
			(itabs < 6 || strings.Contains(name, "net/http.response") || strings.Contains(name, "net.TCPAddr"))
		if !want[name] && !isItab {
			continue
		}
		if isItab {
			itabs++
		}
		le.PutUint32(sym, uint32(strtab.Len()))
		strtab.WriteString(name)
		strtab.WriteByte(0)
		if elf.ST_BIND(sym[4]) == elf.STB_LOCAL {
			locals = append(locals, sym)
		} else {
			globals = append(globals, sym)
		}
	}
	out := make([]byte, 24)
	for _, sym := range append(locals, globals...) {
		out = append(out, sym...)
	}
	return out, strtab.Bytes(), uint32(1 + len(locals)), nil
}

// dwarfELF writes an ELF with only .debug_abbrev and a .debug_info of, per unit
// holding wanted structs (by name), its header, its root DIE, those structs'
// subtrees (bytes as they are: references in them are not followed by the reader)
// and the end of its children. compress: "" (plain), "z" (SHF_COMPRESSED zlib) or
// "zdebug" (GNU .zdebug_* sections).
func dwarfELF(f *elf.File, wanted map[string]bool, compress string) ([]byte, error) {
	info, err := f.Section(".debug_info").Data()
	if err != nil {
		return nil, err
	}
	abbrev, err := f.Section(".debug_abbrev").Data()
	if err != nil {
		return nil, err
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	r := d.Reader()
	var unit []byte // header and root DIE of the current unit
	var unitEnd dwarf.Offset
	var structs [][]byte
	flush := func() {
		if len(structs) == 0 {
			return
		}
		var u bytes.Buffer
		u.Write(unit)
		for _, s := range structs {
			u.Write(s)
		}
		u.WriteByte(0)
		b := u.Bytes()
		le.PutUint32(b, uint32(len(b)-4))
		out.Write(b)
		structs = nil
	}
	others := 0
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		switch {
		case e.Tag == dwarf.TagCompileUnit:
			flush()
			hdr := 11 // DWARF 2-4: length, version, abbrev offset, address size
			if le.Uint16(info[e.Offset-8:]) == 5 {
				hdr = 12 // DWARF 5 adds the unit type
			} else if v := le.Uint16(info[e.Offset-7:]); v < 2 || v > 4 {
				return nil, fmt.Errorf("unit at %#x: DWARF version %d", e.Offset, v)
			}
			start := int(e.Offset) - hdr
			unitEnd = dwarf.Offset(start + 4 + int(le.Uint32(info[start:])))
			unit = nil
			if !e.Children {
				continue
			}
			next, err := r.Next() // first child: the root DIE ends there
			if err != nil || next == nil || next.Tag == 0 {
				continue
			}
			unit = append([]byte(nil), info[start:next.Offset]...)
			r.Seek(next.Offset)
		case e.Tag == dwarf.TagStructType:
			name, _ := e.Val(dwarf.AttrName).(string)
			// Wanted ones, and one in every 200 others (variety for the fuzzer).
			take := wanted[name]
			if !take && name != "" {
				others++
				take = others%200 == 0
			}
			if !e.Children {
				continue
			}
			r.SkipChildren()
			if !take || unit == nil {
				continue
			}
			// The subtree ends where the next sibling starts, or at the null entry
			// that ends the unit's children (its last byte).
			next, err := r.Next()
			if err != nil {
				return nil, err
			}
			if next != nil && next.Tag != 0 {
				structs = append(structs, info[e.Offset:next.Offset])
				r.Seek(next.Offset)
			} else {
				structs = append(structs, info[e.Offset:unitEnd-1])
			}
		case e.Children:
			r.SkipChildren()
		}
	}
	flush()
	sections := []struct {
		name string
		data []byte
	}{{"abbrev", abbrev}, {"info", out.Bytes()}}
	// ELF header, then section headers (null, the two, .shstrtab), then contents.
	shstrtab := []byte("\x00")
	var names []uint32
	for _, s := range sections {
		prefix := ".debug_"
		if compress == "zdebug" {
			prefix = ".zdebug_"
		}
		names = append(names, uint32(len(shstrtab)))
		shstrtab = append(append(shstrtab, prefix+s.name...), 0)
	}
	strName := uint32(len(shstrtab))
	shstrtab = append(shstrtab, ".shstrtab\x00"...)
	var payload bytes.Buffer
	base := 64 + 64*4
	type sec struct {
		name, typ     uint32
		flags, off, n uint64
	}
	secs := []sec{{}}
	for i, s := range sections {
		data, flags := s.data, uint64(0)
		switch compress {
		case "z":
			var z bytes.Buffer
			var chdr [24]byte
			le.PutUint32(chdr[0:], uint32(elf.COMPRESS_ZLIB))
			le.PutUint64(chdr[8:], uint64(len(data)))
			le.PutUint64(chdr[16:], 1)
			z.Write(chdr[:])
			w := zlib.NewWriter(&z)
			w.Write(data)
			w.Close()
			data, flags = z.Bytes(), uint64(elf.SHF_COMPRESSED)
		case "zdebug":
			var z bytes.Buffer
			z.WriteString("ZLIB")
			binary.Write(&z, binary.BigEndian, uint64(len(data)))
			w := zlib.NewWriter(&z)
			w.Write(data)
			w.Close()
			data = z.Bytes()
		}
		secs = append(secs, sec{names[i], uint32(elf.SHT_PROGBITS), flags, uint64(base + payload.Len()), uint64(len(data))})
		payload.Write(data)
	}
	secs = append(secs, sec{strName, uint32(elf.SHT_STRTAB), 0, uint64(base + payload.Len()), uint64(len(shstrtab))})
	payload.Write(shstrtab)
	var file bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	le.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
	le.PutUint16(hdr[18:], uint16(f.Machine))
	le.PutUint32(hdr[20:], 1)
	le.PutUint64(hdr[40:], 64) // e_shoff
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], uint16(len(secs)))
	le.PutUint16(hdr[62:], uint16(len(secs)-1))
	file.Write(hdr)
	for _, s := range secs {
		var sh [64]byte
		le.PutUint32(sh[0:], s.name)
		le.PutUint32(sh[4:], s.typ)
		le.PutUint64(sh[8:], s.flags)
		le.PutUint64(sh[24:], s.off)
		le.PutUint64(sh[32:], s.n)
		le.PutUint64(sh[48:], 1)
		file.Write(sh[:])
	}
	file.Write(payload.Bytes())
	return file.Bytes(), nil
}

// itabWindows are the address ranges the itab reader (sidecar/goexe/src/itabs.rs)
// reads for the first eight itabs: each itab, both type descriptors and the names
// they point at. Up to Go 1.26 the itabs are listed by moduledata.itablinks; from
// Go 1.27 they lie in a row at types+itaboffset. So that the reader stops after
// those eight, it also returns the moduledata words to patch (offset in md →
// value) and how many .itablink entries to keep (-1: not listed that way).
// Layouts come from the input's DWARF, else Go 1.26's.
func itabWindows(raw []byte, f *elf.File, md []byte) ([][2]uint64, map[int]uint64, int) {
	layout := structOffsets(f, map[string][]string{
		"runtime.moduledata":         {"types", "etypes", "itablinks", "itaboffset", "itabsize"},
		"internal/abi.ITab":          {"Inter", "Type", "Fun"},
		"runtime.itab":               {"inter", "_type"},
		"internal/abi.Type":          {"TFlag", "Kind_", "Str"},
		"internal/abi.InterfaceType": {"PkgPath", "Methods"},
	})
	if len(layout) == 0 { // stripped: assume Go 1.26's layout, as the fuzz target does
		layout = map[string]uint64{"runtime.moduledata.types": 296, "runtime.moduledata.etypes": 304,
			"runtime.moduledata.itablinks": 384, "internal/abi.ITab.Inter": 0, "internal/abi.ITab.Type": 8,
			"internal/abi.Type.TFlag": 20, "internal/abi.Type.Kind_": 23, "internal/abi.Type.Str": 40,
			"internal/abi.InterfaceType.PkgPath": 48}
	}
	off := func(s, f string) (uint64, bool) { v, ok := layout[s+"."+f]; return v, ok }
	inMD := func(o uint64) bool { return int(o)+8 <= len(md) }
	mdTypes, ok1 := off("runtime.moduledata", "types")
	tStr, ok3 := off("internal/abi.Type", "Str")
	ifacePath, ok4 := off("internal/abi.InterfaceType", "PkgPath")
	inter, okI := off("internal/abi.ITab", "Inter")
	typ, okT := off("internal/abi.ITab", "Type")
	if !okI || !okT {
		inter, okI = off("runtime.itab", "inter")
		typ, okT = off("runtime.itab", "_type")
	}
	if !ok1 || !ok3 || !ok4 || !okI || !okT || !inMD(mdTypes) {
		return nil, nil, -1
	}
	word := func(addr uint64) (uint64, bool) {
		o, ok := fileOffset(f, addr)
		if !ok || o+8 > uint64(len(raw)) {
			return 0, false
		}
		return le.Uint64(raw[o:]), true
	}
	types := le.Uint64(md[mdTypes:])
	var out [][2]uint64
	name := func(at uint64) { out = append(out, [2]uint64{at, at + 128}) }
	// One itab's interface and type, and their names.
	itab := func(at uint64) {
		for j, field := range []uint64{inter, typ} {
			t, ok := word(at + field)
			if !ok {
				continue
			}
			out = append(out, [2]uint64{t, t + 128})
			if str, ok := word(t + tStr); ok {
				name(types + str&0xffffffff)
			}
			if j == 0 {
				if p, ok := word(t + ifacePath); ok && p != 0 {
					name(p)
				}
				continue
			}
			// Concrete types: the uncommon data's package path follows the
			// descriptor; keep what any kind's would need.
			for _, end := range []uint64{48, 56, 80} {
				if path, ok := word(t + end); ok {
					name(types + path&0xffffffff)
				}
			}
		}
	}
	patches := map[int]uint64{}
	if mdLinks, ok := off("runtime.moduledata", "itablinks"); ok && inMD(mdLinks+16) {
		links, count := le.Uint64(md[mdLinks:]), min(le.Uint64(md[mdLinks+8:]), 8)
		for i := uint64(0); i < count; i++ {
			if at, ok := word(links + 8*i); ok {
				out = append(out, [2]uint64{at, at + 16})
				itab(at)
			}
		}
		patches[int(mdLinks+8)], patches[int(mdLinks+16)] = count, count
		return coalesce(out), patches, int(count)
	}
	mdOffset, ok5 := off("runtime.moduledata", "itaboffset")
	mdSize, ok6 := off("runtime.moduledata", "itabsize")
	fun, ok7 := off("internal/abi.ITab", "Fun")
	methods, ok8 := off("internal/abi.InterfaceType", "Methods")
	if !ok5 || !ok6 || !ok7 || !ok8 || !inMD(mdOffset) || !inMD(mdSize) {
		return nil, nil, -1
	}
	start := types + le.Uint64(md[mdOffset:])
	end := start + le.Uint64(md[mdSize:])
	at := start
	for i := 0; i < 8 && at < end; i++ {
		iface, ok := word(at + inter)
		if !ok {
			break
		}
		n := uint64(1) // Fun[0] == 0: the type does not implement it, one slot
		if fun0, _ := word(at + fun); fun0 != 0 {
			if m, ok := word(iface + methods + 8); ok && m > 0 {
				n = m
			}
		}
		out = append(out, [2]uint64{at, at + fun + 8*n})
		itab(at)
		at += fun + 8*n
	}
	patches[int(mdSize)] = at - start
	return coalesce(out), patches, -1
}

// coalesce merges overlapping or nearby ranges.
func coalesce(ranges [][2]uint64) [][2]uint64 {
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	var out [][2]uint64
	for _, r := range ranges {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+64 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// structOffsets reads member offsets of the wanted structs ("struct.field" keys)
// from the DWARF of f; empty without DWARF.
func structOffsets(f *elf.File, wanted map[string][]string) map[string]uint64 {
	out := map[string]uint64{}
	d, err := f.DWARF()
	if err != nil {
		return out
	}
	r := d.Reader()
	for len(wanted) > 0 {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			if e.Children && e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		fields, ok := wanted[name]
		if !ok {
			r.SkipChildren()
			continue
		}
		delete(wanted, name)
		t, err := d.Type(e.Offset)
		r.SkipChildren()
		st, ok := t.(*dwarf.StructType)
		if err != nil || !ok {
			continue
		}
		for _, m := range st.Field {
			for _, fl := range fields {
				if m.Name == fl {
					out[name+"."+fl] = uint64(m.ByteOffset)
				}
			}
		}
	}
	return out
}
